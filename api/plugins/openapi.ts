import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import { errorResponseSchema } from '../errors';
import { OAUTH_ERROR_CODES, oauthErrorSchema } from '../../platform/oauth-server/errors';

const OPENAPI_PATH = '/openapi.json';

// First match wins; a new route under one of these prefixes is grouped without a change here.
const TAGS: Array<[prefix: string, tag: string]> = [
  ['/healthz', 'health'],
  ['/readyz', 'health'],
  ['/api/v1/auth/', 'sessions'],
  ['/api/v1/integrations/', 'integrations'],
  ['/api/v1/admin/', 'administration'],
  ['/api/v1/sso/', 'single sign-on'],
  ['/sso/', 'single sign-on'],
  ['/oauth/backchannel-logout', 'single sign-on'],
  ['/api/v1/ai/voice-devices', 'voice'],
  ['/api/v1/voice/', 'voice'],
  ['/webhooks/', 'webhooks'],
  ['/oauth/', 'authorization server'],
  ['/.well-known/', 'authorization server'],
  ['/login', 'authorization server'],
  [OPENAPI_PATH, 'documentation'],
];

const components = {
  schemas: {
    Error: {
      type: 'object' as const,
      required: [...errorResponseSchema.required],
      properties: errorResponseSchema.properties,
      description: 'Every error of the API outside the OAuth endpoints: a machine-readable code and a message for a person.',
    },
    OAuthError: {
      type: 'object' as const,
      required: ['error'],
      description: 'RFC 6749 section 5.2 error of the OAuth endpoints; invalid_client comes with 401 and WWW-Authenticate, the rest with 400 (429 and 5xx for temporarily_unavailable and server_error).',
      properties: { error: { type: 'string' as const, enum: [...OAUTH_ERROR_CODES] }, error_description: { type: 'string' as const } },
    },
  },
};

/**
 * The OpenAPI 3.1 document of every route, built from the routes' own JSON schemas. Registered at
 * the root before any route, so a route added anywhere later is in the document without more work.
 * Served outside production, and in production only when OPENAPI_ENABLED says so.
 */
export default fp(async function openapi(app: FastifyInstance) {
  if (!app.services.config.openapiEnabled) return;
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'OAuth integration platform: api-server', version: '1' },
      components,
    },
    transformObject: (document) => referenceErrorSchemas('openapiObject' in document ? document.openapiObject : document.swaggerObject),
    transform: ({ schema, url }) => {
      const tag = TAGS.find(([prefix]) => url.startsWith(prefix))?.[1];
      return { schema: { ...schema, ...(tag && !schema?.tags ? { tags: [tag] } : {}) }, url };
    },
  });
  app.get(
    OPENAPI_PATH,
    { schema: { summary: 'This OpenAPI document', response: { 200: { type: 'object', additionalProperties: true } } } },
    async () => app.swagger(),
  );
});

// The routes spell the two error shapes out inline; the document points them at the shared components instead.
const ERROR_REFERENCES = new Map([
  [canonical(errorResponseSchema), '#/components/schemas/Error'],
  [canonical(oauthErrorSchema), '#/components/schemas/OAuthError'],
]);

function referenceErrorSchemas<T extends { paths?: object }>(document: T): T {
  for (const operations of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(operations ?? {})) {
      for (const response of Object.values((operation as { responses?: object }).responses ?? {})) {
        for (const media of Object.values((response as { content?: object }).content ?? {}) as Array<{ schema?: unknown }>) {
          const reference = ERROR_REFERENCES.get(canonical(media.schema));
          if (reference) media.schema = { $ref: reference };
        }
      }
    }
  }
  return document;
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) =>
    inner && typeof inner === 'object' && !Array.isArray(inner) ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => a.localeCompare(b))) : inner,
  );
}
