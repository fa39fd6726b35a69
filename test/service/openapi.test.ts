import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEncryptionKey } from '../../platform/integration-crypto';
import { OAUTH_ERROR_CODES } from '../../platform/oauth-server/errors';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { registeredRoutes } from '../helpers/routes';

interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, { tags?: string[]; responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>;
  components: { schemas: Record<string, { properties: Record<string, { enum?: string[] }> }> };
}

describe('OpenAPI document', () => {
  let server: OAuthTestServer;
  let document: OpenApiDocument;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    const response = await fetch(`${server.url}/openapi.json`);
    expect(response.status).toBe(200);
    document = (await response.json()) as OpenApiDocument;
  });

  afterAll(async () => {
    await server?.close();
  });

  it('is an OpenAPI 3 document', () => {
    expect(document.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(document.info.title).toBeTruthy();
    expect(document.info.version).toBeTruthy();
    for (const [path, operations] of Object.entries(document.paths)) {
      expect(path).toMatch(/^\//);
      for (const [method, operation] of Object.entries(operations)) {
        expect(['get', 'put', 'post', 'delete', 'patch', 'options', 'head']).toContain(method);
        expect(Object.keys(operation.responses).length, `${method} ${path} documents its responses`).toBeGreaterThan(0);
      }
    }
  });

  it('documents every route the api-server has', () => {
    const routes = registeredRoutes(server.app);
    // A sanity check of the parser: nested routes are found with their full path.
    expect(routes).toContain('PUT /api/v1/admin/oauth/clients/{id}/redirect-uris');
    expect(routes.length).toBeGreaterThan(20);
    const documented = Object.entries(document.paths).flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`));
    expect(documented.sort()).toEqual(routes.sort());
  });

  it('documents the JSON error shape and the OAuth error codes as components, and the routes refer to them', () => {
    expect(document.components.schemas.Error).toMatchObject({ required: ['error', 'message'], properties: { error: { type: 'string' }, message: { type: 'string' } } });
    expect(document.components.schemas.OAuthError!.properties.error!.enum).toEqual([...OAUTH_ERROR_CODES]);
    expect(document.paths['/api/v1/auth/me']!.get!.responses['401']!.content!['application/json']!.schema).toEqual({ $ref: '#/components/schemas/Error' });
    expect(document.paths['/oauth/token']!.post!.responses['4XX']!.content!['application/json']!.schema).toEqual({ $ref: '#/components/schemas/OAuthError' });
  });

  it('groups the routes by area', () => {
    expect(document.paths['/readyz']!.get!.tags).toEqual(['health']);
    expect(document.paths['/oauth/token']!.post!.tags).toEqual(['authorization server']);
    expect(document.paths['/api/v1/integrations/google-calendar/status']!.get!.tags).toEqual(['integrations']);
  });

  it('is not served in production unless OPENAPI_ENABLED turns it on', async () => {
    const production = { APP_ENV: 'production', TEMPORAL_PAYLOAD_KEY: generateEncryptionKey() };
    for (const [environment, status] of [[production, 404], [{ ...production, OPENAPI_ENABLED: 'true' }, 200]] as const) {
      const other = await startOAuthTestServer(environment);
      try {
        expect((await fetch(`${other.url}/openapi.json`)).status).toBe(status);
      } finally {
        await other.close();
      }
    }
  });
});
