import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows, basicAuth, introspect, postAsClient, postForm, type TestClient } from './token-helpers';

describe('client credentials grant', () => {
  let server: OAuthTestServer;
  let service: TestClient;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    service = await server.createClient({
      name: 'Reporting service',
      kind: 'service',
      redirectUris: [],
      grantTypes: ['client_credentials'],
      scopes: ['properties:read', 'reservations:read'],
    });
  });
  afterAll(() => server?.close());

  it('issues an access token for the client itself, with no refresh token', async () => {
    const response = await postAsClient(server, '/oauth/token', service, { grant_type: 'client_credentials', scope: 'properties:read' });
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.body).toEqual({
      access_token: expect.any(String),
      token_type: 'Bearer',
      expires_in: server.config.lifetimes.accessTokenSeconds,
      scope: 'properties:read',
    });
    const claims = decodeJwt(response.body.access_token as string);
    expect(claims).toMatchObject({ sub: service.client.id, client_id: service.client.id, scope: 'properties:read', iss: server.url, aud: server.url });
    expect(await introspect(server, service, response.body.access_token as string)).toMatchObject({ active: true, sub: service.client.id });
    expect(await auditRows(server, 'OAuthClientCredentials')).toContainEqual(expect.objectContaining({ outcome: 'success', client_id: service.client.id }));
  });

  it("defaults to the client's registered scopes", async () => {
    const response = await postAsClient(server, '/oauth/token', service, { grant_type: 'client_credentials' });
    expect(response.status).toBe(200);
    expect(response.body.scope).toBe('properties:read reservations:read');
  });

  it('refuses scopes the client was not registered for', async () => {
    const response = await postAsClient(server, '/oauth/token', service, { grant_type: 'client_credentials', scope: 'properties:write' });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_scope');
  });

  it('refuses clients not registered for the grant type', async () => {
    const thirdParty = await server.createClient();
    const response = await postAsClient(server, '/oauth/token', thirdParty, { grant_type: 'client_credentials' });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('unauthorized_client');
  });

  it('refuses public clients', async () => {
    const publicClient = await server.createClient({ tokenEndpointAuthMethod: 'none', grantTypes: ['authorization_code', 'client_credentials'] });
    const response = await postForm(server, '/oauth/token', { grant_type: 'client_credentials', client_id: publicClient.client.id });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('unauthorized_client');
  });

  it('refuses a wrong secret with 401 invalid_client', async () => {
    const response = await postForm(server, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basicAuth(service.client.id, 'wrong') });
    expect(response.status).toBe(401);
    expect(response.body.error).toBe('invalid_client');
    expect(response.headers.get('www-authenticate')).toMatch(/^Basic /);
  });
});
