import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { OAuthClientRow } from '../../../db/queries/oauth-clients';
import { SUPPORTED_SCOPES } from '../../../platform/oauth-server/scopes';
import {
  ClientMetadataError,
  clientMetadataEnvironment,
  clientMetadataView,
  clientMetadataViewSchema,
  MAX_CLIENT_NAME_LENGTH,
  validateClientMetadata,
} from '../../../platform/oauth-server/client-metadata';
import { ClientRegistry } from '../../../platform/oauth-server/client-registry';
import { OAuthError, oauthErrorSchema } from '../../../platform/oauth-server/errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { answerOAuthErrors } from './oauth-errors';
import { checkConfiguredBearer } from './static-bearer';

export const REGISTRATION_PATH = '/oauth/register';
/** Per client IP address. */
export const REGISTRATION_RATE_LIMIT = { max: 10, timeWindow: '1 minute' } as const;

/**
 * Scopes a client that registers without `scope` gets: read access, and offline_access when it may
 * refresh. Anything else it must ask for; users still consent to each scope.
 */
export function defaultDynamicScopes(grantTypes: readonly string[]): string[] {
  return SUPPORTED_SCOPES.filter((scope) => scope.endsWith(':read') || (scope === 'offline_access' && grantTypes.includes('refresh_token')));
}

/**
 * RFC 7591 client metadata we understand. Other members are ignored, as section 2 asks; types are
 * checked here rather than by the schema so every violation answers invalid_client_metadata.
 */
interface RegistrationRequest {
  redirect_uris?: unknown;
  client_name?: unknown;
  grant_types?: unknown;
  response_types?: unknown;
  token_endpoint_auth_method?: unknown;
  scope?: unknown;
  post_logout_redirect_uris?: unknown;
  backchannel_logout_uri?: unknown;
}

// Redirect URIs stay plain strings: validateRedirectUris refuses NUL (and every control character)
// with the more precise invalid_redirect_uri.
const registrationBodySchema = {
  type: 'object',
  properties: {
    redirect_uris: { type: 'array', items: { type: 'string' } },
    client_name: safeString(4096),
    grant_types: { type: 'array', maxItems: 10, items: safeString(100) },
    response_types: { type: 'array', maxItems: 10, items: safeString(100) },
    token_endpoint_auth_method: safeString(100),
    scope: safeString(4096),
    post_logout_redirect_uris: { type: 'array', items: { type: 'string' } },
    backchannel_logout_uri: { type: 'string' },
  },
} as const;

/** RFC 7591 section 3.2.1: the registered metadata (the admin API's view of the client) with the RFC's names. */
const registrationResponseSchema = {
  ...clientMetadataViewSchema,
  required: ['client_id', 'client_id_issued_at', 'client_name', 'redirect_uris', 'grant_types', 'response_types', 'token_endpoint_auth_method', 'scope'],
  properties: {
    ...clientMetadataViewSchema.properties,
    client_secret: { type: 'string' },
    client_id_issued_at: { type: 'integer' },
    client_secret_expires_at: { type: 'integer' },
    client_name: { type: 'string' },
  },
} as const;

function registrationView(client: OAuthClientRow, clientSecret: string | undefined) {
  return {
    ...clientMetadataView(client),
    client_name: client.name,
    client_id_issued_at: Math.floor(client.createdAt / 1000),
    ...(clientSecret === undefined ? {} : { client_secret: clientSecret, client_secret_expires_at: 0 }),
  };
}

function invalidMetadata(description: string): OAuthError {
  return new OAuthError('invalid_client_metadata', description);
}

function stringArray(value: unknown, member: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((entry) => typeof entry === 'string')) throw invalidMetadata(`${member} must be an array of strings`);
  return value as string[];
}

function optionalString(value: unknown, member: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalidMetadata(`${member} must be a string`);
  return value;
}

/** The name shown on the consent page when a client gives none: the host it sends users back to. */
function defaultName(redirectUris: string[]): string {
  const first = redirectUris[0];
  return first && URL.canParse(first) ? new URL(first).host : 'Unnamed application';
}

/**
 * RFC 7591 dynamic client registration, `POST /oauth/register` with a JSON body.
 *
 * - Protected by the initial access token (OAUTH_INITIAL_ACCESS_TOKEN) as `Authorization: Bearer`;
 *   a missing or wrong token answers 401 `invalid_token` with `WWW-Authenticate: Bearer` (RFC 6750).
 * - When OAUTH_INITIAL_ACCESS_TOKEN is not set, dynamic registration is disabled and the endpoint
 *   answers 404 `not_found`: the server then does not offer RFC 7591 at all, and the metadata
 *   document should not advertise a registration_endpoint (RFC 8414 section 2).
 * - OpenID Connect members: post_logout_redirect_uris and backchannel_logout_uri (OpenID Connect
 *   RP-Initiated and Back-Channel Logout); a client never makes itself first_party.
 * - Registered clients are kind third_party, registered_by dynamic. Defaults per RFC 7591 section 2:
 *   grant_types ["authorization_code"], response_types ["code"], token_endpoint_auth_method
 *   client_secret_basic; scope defaults to defaultDynamicScopes(). client_credentials is for clients
 *   an operator registers (admin API), never for self-registered ones.
 * - Errors: 400 `invalid_redirect_uri` or `invalid_client_metadata` (section 3.2.2).
 * - Rate-limited per IP (REGISTRATION_RATE_LIMIT), counted before the token is checked.
 */
export default async function registration(app: FastifyInstance) {
  const { db, audit, config } = app.services;
  const registry = new ClientRegistry(db, audit);
  const configured = config.authorizationServer.initialAccessToken;

  answerOAuthErrors(app);

  async function requireInitialAccessToken(request: FastifyRequest, reply: FastifyReply) {
    if (configured === undefined) {
      return reply.code(404).send({ error: 'not_found', error_description: 'dynamic client registration is not enabled on this server' });
    }
    const check = checkConfiguredBearer(request, configured);
    if (check !== 'ok') {
      const wrong = check === 'wrong';
      return reply
        .code(401)
        .header('www-authenticate', wrong ? 'Bearer realm="oauth", error="invalid_token"' : 'Bearer realm="oauth"')
        .send({ error: 'invalid_token', error_description: wrong ? 'the initial access token is wrong' : 'an initial access token is required' });
    }
  }

  app.post<{ Body: RegistrationRequest }>(
    REGISTRATION_PATH,
    {
      config: { rateLimit: REGISTRATION_RATE_LIMIT },
      // The token is checked after the rate limit (onRequest) and before the body is validated.
      preValidation: requireInitialAccessToken,
      attachValidation: true,
      schema: {
        body: registrationBodySchema,
        response: { 201: registrationResponseSchema, 400: oauthErrorSchema, 401: oauthErrorSchema, 404: oauthErrorSchema, 429: oauthErrorSchema },
      },
    },
    async (request, reply) => {
      // Section 3.1: the metadata is a JSON document (formbody would otherwise accept a form here).
      if (!/^application\/json\s*(;|$)/i.test(request.headers['content-type'] ?? '')) throw invalidMetadata('send the client metadata as application/json');
      if (request.validationError) throw invalidMetadata(request.validationError.message);
      const body = request.body;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidMetadata('the request body must be a JSON object');

      const redirectUris = stringArray(body.redirect_uris, 'redirect_uris') ?? [];
      const grantTypes = stringArray(body.grant_types, 'grant_types') ?? ['authorization_code'];
      const responseTypes = stringArray(body.response_types, 'response_types');
      const authMethod = optionalString(body.token_endpoint_auth_method, 'token_endpoint_auth_method') ?? 'client_secret_basic';
      const scope = optionalString(body.scope, 'scope');
      const name = optionalString(body.client_name, 'client_name');
      const postLogoutRedirectUris = stringArray(body.post_logout_redirect_uris, 'post_logout_redirect_uris');
      const backchannelLogoutUri = optionalString(body.backchannel_logout_uri, 'backchannel_logout_uri');

      // Section 2.1: response_types and grant_types must agree; only the code flow exists here.
      const unsupportedResponses = (responseTypes ?? []).filter((type) => type !== 'code');
      if (unsupportedResponses.length > 0) throw invalidMetadata(`unsupported response_types: ${unsupportedResponses.join(', ')} (only "code")`);
      if (responseTypes !== undefined && responseTypes.includes('code') !== grantTypes.includes('authorization_code')) {
        throw invalidMetadata('response_types "code" and grant_types "authorization_code" go together');
      }
      if (grantTypes.includes('client_credentials')) throw invalidMetadata('client_credentials clients are registered by an operator, not dynamically');
      if (name !== undefined && name.length > MAX_CLIENT_NAME_LENGTH) throw invalidMetadata(`client_name must be at most ${MAX_CLIENT_NAME_LENGTH} characters long`);

      let metadata;
      try {
        metadata = validateClientMetadata({
          name: name ?? defaultName(redirectUris),
          redirectUris,
          grantTypes,
          scopes: scope === undefined ? defaultDynamicScopes(grantTypes) : scope.split(' ').filter(Boolean),
          tokenEndpointAuthMethod: authMethod,
          kind: 'third_party',
          // first_party is not a member a client can register: only operators make a client first-party.
          postLogoutRedirectUris,
          backchannelLogoutUri,
        }, clientMetadataEnvironment(config));
      } catch (error) {
        if (error instanceof ClientMetadataError) throw new OAuthError(error.code, error.message);
        throw error;
      }

      const { client, clientSecret } = await registry.create(metadata, 'dynamic', { actor: 'self', origin: requestOrigin(request) });
      return reply.code(201).send(registrationView(client, clientSecret));
    },
  );
}
