import type { FastifyInstance, FastifyRequest } from 'fastify';
import { findClient, listClients } from '../../../db/queries/oauth-clients';
import { listUnfinishedClientVoiceDevices } from '../../../db/queries/voice-devices';
import type { AuditEntry } from '../../../platform/audit';
import {
  CLIENT_KINDS,
  ClientMetadataError,
  clientMetadataEnvironment,
  clientMetadataView,
  clientMetadataViewSchema,
  MAX_CLIENT_NAME_LENGTH,
  MAX_REDIRECT_URI_LENGTH,
  MAX_REDIRECT_URIS,
  TOKEN_ENDPOINT_AUTH_METHODS,
  validateClientMetadata,
  voiceClientMetadata,
  VOICE_PLATFORMS,
  type ValidClientMetadata,
} from '../../../platform/oauth-server/client-metadata';
import { ClientChangeError, ClientRegistry } from '../../../platform/oauth-server/client-registry';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { requireAdminToken } from './admin-authentication';
import { requestVoiceDeviceUnlink } from '../voice/unlink';

export const ADMIN_CLIENTS_PREFIX = '/api/v1/admin/oauth/clients';
/** Voice clients are created here from a few settings; they are read, changed and revoked like any client. */
export const ADMIN_VOICE_CLIENTS_PREFIX = '/api/v1/admin/oauth/voice-clients';

const ADMIN_ACTOR: AuditEntry['actor'] = { type: 'operator', id: 'admin-api' };

// Redirect URIs are plain strings here on purpose: validateRedirectUris refuses NUL and every other
// control character before a query runs, with the more precise invalid_redirect_uri.
const redirectUrisSchema = {
  type: 'array',
  maxItems: MAX_REDIRECT_URIS,
  items: { type: 'string', minLength: 1, maxLength: MAX_REDIRECT_URI_LENGTH },
} as const;

/** OpenID Connect members; URIs are plain strings for the same reason as redirect URIs. */
const openIdMembersSchema = {
  first_party: { type: 'boolean' },
  post_logout_redirect_uris: redirectUrisSchema,
  backchannel_logout_uri: { type: ['string', 'null'], maxLength: MAX_REDIRECT_URI_LENGTH },
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
    voice_platform: { type: 'string', enum: [...VOICE_PLATFORMS] },
    ...openIdMembersSchema,
  },
} as const;

interface OpenIdMembersBody {
  first_party?: boolean;
  post_logout_redirect_uris?: string[];
  backchannel_logout_uri?: string | null;
}

interface CreateBody extends OpenIdMembersBody {
  name: string;
  redirect_uris?: string[];
  grant_types: string[];
  scopes: string[];
  token_endpoint_auth_method: string;
  kind?: string;
  voice_platform?: string;
}

const createVoiceBodySchema = {
  type: 'object',
  required: ['platform'],
  additionalProperties: false,
  properties: {
    platform: { type: 'string', enum: [...VOICE_PLATFORMS] },
    name: safeString(MAX_CLIENT_NAME_LENGTH, { minLength: 1 }),
    vendor_id: safeString(64, { minLength: 1 }),
    project_id: safeString(64, { minLength: 1 }),
    token_endpoint_auth_method: { type: 'string', enum: ['client_secret_basic', 'client_secret_post'] },
    scopes: { type: 'array', minItems: 1, maxItems: 50, items: safeString(100) },
  },
} as const;

interface CreateVoiceBody {
  platform: string;
  name?: string;
  vendor_id?: string;
  project_id?: string;
  token_endpoint_auth_method?: string;
  scopes?: string[];
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
 * Client administration for operators, behind `Authorization: Bearer <ADMIN_API_TOKEN>`
 * (requireAdminToken): create, list, read, replace redirect URIs, change the OpenID Connect members
 * (first_party, post_logout_redirect_uris, backchannel_logout_uri), rotate the secret, revoke; voice
 * clients are created from their platform's settings. Secrets are answered once, never logged or
 * audited.
 */
export default async function adminClients(app: FastifyInstance) {
  const { db, audit, config } = app.services;
  const registry = new ClientRegistry(db, audit);
  const environment = clientMetadataEnvironment(config);
  requireAdminToken(app);

  async function create(request: FastifyRequest, validate: () => ValidClientMetadata) {
    const { client, clientSecret } = await mapErrors(() => registry.create(validate(), 'admin', { actor: ADMIN_ACTOR, origin: requestOrigin(request) }));
    const secret = clientSecret === undefined ? {} : { client_secret: clientSecret, client_secret_expires_at: 0 };
    return { ...clientMetadataView(client), ...secret };
  }

  app.post<{ Body: CreateBody }>(
    ADMIN_CLIENTS_PREFIX,
    { schema: { body: createBodySchema, response: { 201: clientWithSecretSchema, ...errorResponses } } },
    async (request, reply) => {
      const body = request.body;
      const created = await create(request, () =>
        validateClientMetadata({
          name: body.name,
          redirectUris: body.redirect_uris ?? [],
          grantTypes: body.grant_types,
          scopes: body.scopes,
          tokenEndpointAuthMethod: body.token_endpoint_auth_method,
          kind: body.kind ?? 'third_party',
          voicePlatform: body.voice_platform,
          firstParty: body.first_party,
          postLogoutRedirectUris: body.post_logout_redirect_uris,
          backchannelLogoutUri: body.backchannel_logout_uri ?? undefined,
        }, environment),
      );
      return reply.code(201).send(created);
    },
  );

  app.post<{ Body: CreateVoiceBody }>(
    ADMIN_VOICE_CLIENTS_PREFIX,
    { schema: { body: createVoiceBodySchema, response: { 201: clientWithSecretSchema, ...errorResponses } } },
    async (request, reply) => {
      const body = request.body;
      const created = await create(request, () =>
        voiceClientMetadata(
          {
            platform: body.platform,
            name: body.name,
            vendorId: body.vendor_id,
            projectId: body.project_id,
            tokenEndpointAuthMethod: body.token_endpoint_auth_method,
            scopes: body.scopes,
          },
          { alexaVendorId: config.voice.alexa.vendorId, googleProjectId: config.voice.google.projectId },
        ),
      );
      return reply.code(201).send(created);
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

  app.patch<{ Params: { id: string }; Body: OpenIdMembersBody }>(
    `${ADMIN_CLIENTS_PREFIX}/:id`,
    {
      schema: {
        params: idParamsSchema,
        body: { type: 'object', minProperties: 1, additionalProperties: false, properties: openIdMembersSchema },
        response: { 200: clientMetadataViewSchema, ...errorResponses },
      },
    },
    async (request) => {
      const body = request.body;
      const change = {
        ...(body.first_party !== undefined ? { firstParty: body.first_party } : {}),
        ...(body.post_logout_redirect_uris !== undefined ? { postLogoutRedirectUris: body.post_logout_redirect_uris } : {}),
        ...(body.backchannel_logout_uri !== undefined ? { backchannelLogoutUri: body.backchannel_logout_uri } : {}),
      };
      return clientMetadataView(
        await mapErrors(() => registry.changeOpenIdMembers(request.params.id, change, environment, { actor: ADMIN_ACTOR, origin: requestOrigin(request) })),
      );
    },
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
    async (request) => {
      const origin = requestOrigin(request);
      const client = await mapErrors(() => registry.revoke(request.params.id, { actor: ADMIN_ACTOR, origin }));
      // A voice client's grants are device links: each device's workflow also ends the platform's side.
      for (const device of await listUnfinishedClientVoiceDevices(db, client.id)) {
        await requestVoiceDeviceUnlink(app.services, device, { direction: 'client_revoked', requestedBy: { type: 'operator', id: ADMIN_ACTOR.id }, origin });
      }
      return clientMetadataView(client);
    },
  );
}
