import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { findClient, listClients } from '../../../db/queries/oauth-clients';
import type { AuditEntry } from '../../../platform/audit';
import {
  CLIENT_KINDS,
  ClientMetadataError,
  clientMetadataView,
  clientMetadataViewSchema,
  MAX_CLIENT_NAME_LENGTH,
  MAX_REDIRECT_URI_LENGTH,
  MAX_REDIRECT_URIS,
  TOKEN_ENDPOINT_AUTH_METHODS,
  validateClientMetadata,
} from '../../../platform/oauth-server/client-metadata';
import { ClientChangeError, ClientRegistry } from '../../../platform/oauth-server/client-registry';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { checkConfiguredBearer } from './static-bearer';

export const ADMIN_CLIENTS_PREFIX = '/api/v1/admin/oauth/clients';

const ADMIN_ACTOR: AuditEntry['actor'] = { type: 'operator', id: 'admin-api' };

// Redirect URIs are plain strings here on purpose: validateRedirectUris refuses NUL and every other
// control character before a query runs, with the more precise invalid_redirect_uri.
const redirectUrisSchema = {
  type: 'array',
  maxItems: MAX_REDIRECT_URIS,
  items: { type: 'string', minLength: 1, maxLength: MAX_REDIRECT_URI_LENGTH },
} as const;

const createBodySchema = {
  type: 'object',
  required: ['name', 'grant_types', 'scopes', 'token_endpoint_auth_method'],
  additionalProperties: false,
  properties: {
    name: safeString(MAX_CLIENT_NAME_LENGTH, { minLength: 1 }),
    redirect_uris: redirectUrisSchema,
    grant_types: { type: 'array', minItems: 1, maxItems: 10, items: safeString(100) },
    scopes: { type: 'array', minItems: 1, maxItems: 50, items: safeString(100) },
    token_endpoint_auth_method: { type: 'string', enum: [...TOKEN_ENDPOINT_AUTH_METHODS] },
    kind: { type: 'string', enum: [...CLIENT_KINDS] },
  },
} as const;

interface CreateBody {
  name: string;
  redirect_uris?: string[];
  grant_types: string[];
  scopes: string[];
  token_endpoint_auth_method: string;
  kind?: string;
}

const idParamsSchema = {
  type: 'object',
  required: ['id'],
  properties: { id: safeString(200, { minLength: 1 }) },
} as const;

const clientWithSecretSchema = {
  ...clientMetadataViewSchema,
  properties: {
    ...clientMetadataViewSchema.properties,
    client_secret: { type: 'string' },
    client_secret_expires_at: { type: 'integer' },
  },
} as const;

const errorResponses = { 400: errorResponseSchema, 401: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema, 503: errorResponseSchema };

function asHttpError(error: unknown): unknown {
  if (error instanceof ClientMetadataError) return new HttpError(400, error.code, error.message);
  if (error instanceof ClientChangeError) {
    if (error.reason === 'not_found') return new HttpError(404, 'not_found', 'No such client');
    if (error.reason === 'revoked') return new HttpError(409, 'client_revoked', 'The client is revoked and cannot be changed');
    return new HttpError(409, 'public_client', error.message);
  }
  return error;
}

async function mapErrors<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw asHttpError(error);
  }
}

/**
 * Client administration for operators, behind `Authorization: Bearer <ADMIN_API_TOKEN>`:
 * create, list, read, replace redirect URIs, rotate the secret, revoke. Without ADMIN_API_TOKEN
 * every route answers 503 admin_disabled. Secrets are answered once, never logged or audited,
 * and responses are never cached.
 */
export default async function adminClients(app: FastifyInstance) {
  const { db, audit, config } = app.services;
  const registry = new ClientRegistry(db, audit);
  const configured = config.authorizationServer.adminApiToken;

  // Runs before the body is parsed or validated: an unauthenticated caller learns nothing about the API.
  async function requireAdmin(request: FastifyRequest, reply: FastifyReply) {
    if (configured === undefined) throw new HttpError(503, 'admin_disabled', 'The admin API is disabled: ADMIN_API_TOKEN is not set');
    const check = checkConfiguredBearer(request, configured);
    if (check === 'missing') {
      reply.header('www-authenticate', 'Bearer realm="admin"');
      throw new HttpError(401, 'unauthenticated', 'An admin bearer token is required');
    }
    if (check === 'wrong') {
      reply.header('www-authenticate', 'Bearer realm="admin", error="invalid_token"');
      throw new HttpError(401, 'invalid_token', 'The admin bearer token is wrong');
    }
  }

  app.addHook('onRequest', requireAdmin);
  app.addHook('onSend', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
  });

  app.post<{ Body: CreateBody }>(
    ADMIN_CLIENTS_PREFIX,
    { schema: { body: createBodySchema, response: { 201: clientWithSecretSchema, ...errorResponses } } },
    async (request, reply) => {
      const body = request.body;
      const { client, clientSecret } = await mapErrors(async () => {
        const metadata = validateClientMetadata({
          name: body.name,
          redirectUris: body.redirect_uris ?? [],
          grantTypes: body.grant_types,
          scopes: body.scopes,
          tokenEndpointAuthMethod: body.token_endpoint_auth_method,
          kind: body.kind ?? 'third_party',
        });
        return registry.create(metadata, 'admin', { actor: ADMIN_ACTOR, origin: requestOrigin(request) });
      });
      const secret = clientSecret === undefined ? {} : { client_secret: clientSecret, client_secret_expires_at: 0 };
      return reply.code(201).send({ ...clientMetadataView(client), ...secret });
    },
  );

  app.get(
    ADMIN_CLIENTS_PREFIX,
    {
      schema: {
        response: {
          200: { type: 'object', required: ['clients'], properties: { clients: { type: 'array', items: clientMetadataViewSchema } } },
          ...errorResponses,
        },
      },
    },
    async () => ({ clients: (await listClients(db)).map(clientMetadataView) }),
  );

  app.get<{ Params: { id: string } }>(
    `${ADMIN_CLIENTS_PREFIX}/:id`,
    { schema: { params: idParamsSchema, response: { 200: clientMetadataViewSchema, ...errorResponses } } },
    async (request) => {
      const client = await findClient(db, request.params.id);
      if (!client) throw new HttpError(404, 'not_found', 'No such client');
      return clientMetadataView(client);
    },
  );

  app.put<{ Params: { id: string }; Body: { redirect_uris: string[] } }>(
    `${ADMIN_CLIENTS_PREFIX}/:id/redirect-uris`,
    {
      schema: {
        params: idParamsSchema,
        body: { type: 'object', required: ['redirect_uris'], additionalProperties: false, properties: { redirect_uris: redirectUrisSchema } },
        response: { 200: clientMetadataViewSchema, ...errorResponses },
      },
    },
    async (request) =>
      clientMetadataView(
        await mapErrors(() => registry.replaceRedirectUris(request.params.id, request.body.redirect_uris, { actor: ADMIN_ACTOR, origin: requestOrigin(request) })),
      ),
  );

  app.post<{ Params: { id: string } }>(
    `${ADMIN_CLIENTS_PREFIX}/:id/secret`,
    { schema: { params: idParamsSchema, response: { 200: clientWithSecretSchema, ...errorResponses } } },
    async (request) => {
      const { client, clientSecret } = await mapErrors(() => registry.rotateSecret(request.params.id, { actor: ADMIN_ACTOR, origin: requestOrigin(request) }));
      return { ...clientMetadataView(client), client_secret: clientSecret, client_secret_expires_at: 0 };
    },
  );

  app.delete<{ Params: { id: string } }>(
    `${ADMIN_CLIENTS_PREFIX}/:id`,
    { schema: { params: idParamsSchema, response: { 200: clientMetadataViewSchema, ...errorResponses } } },
    async (request) => clientMetadataView(await mapErrors(() => registry.revoke(request.params.id, { actor: ADMIN_ACTOR, origin: requestOrigin(request) }))),
  );
}
