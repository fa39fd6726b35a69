import type { FastifyInstance } from 'fastify';
import { PASSWORD_ACR } from '../../../platform/oauth-server/id-tokens';
import { PROMPT_VALUES } from '../../../platform/oauth-server/oidc-request';
import { USERINFO_CLAIMS } from '../../../platform/oauth-server/userinfo';
import { END_SESSION_PATH } from './end-session';
import { authorizationServerMetadata, authorizationServerMetadataProperties, issuerEndpoint, stringArray } from './metadata';
import { USERINFO_PATH } from './userinfo';

/** The claims of our id_tokens (id-tokens.ts) and of userinfo. */
const CLAIMS_SUPPORTED = ['iss', 'sub', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'acr', 'amr', 'sid', ...USERINFO_CLAIMS.filter((claim) => claim !== 'sub')];

/**
 * OpenID Connect Discovery 1.0 section 3: the RFC 8414 document and what an OpenID Provider adds.
 * There is no front-channel logout, no request objects and no `claims` parameter
 * (request_uri_parameter_supported defaults to true, so it is said explicitly).
 *
 * backchannel_logout_supported is false although the Reality Portal receives logout tokens: this
 * document speaks to every relying party, and only the portal's own client (served by its SSO session
 * workflow) may register a backchannel_logout_uri. A third party reading true would register
 * one and wait for tokens that never come; it uses RP-initiated logout and sees a session end when
 * userinfo or a refresh is refused.
 */
export function openIdProviderMetadata(issuer: string, registrationEnabled: boolean) {
  return {
    ...authorizationServerMetadata(issuer, registrationEnabled),
    userinfo_endpoint: issuerEndpoint(issuer, USERINFO_PATH.slice(1)),
    end_session_endpoint: issuerEndpoint(issuer, END_SESSION_PATH.slice(1)),
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    claims_supported: CLAIMS_SUPPORTED,
    claim_types_supported: ['normal'],
    prompt_values_supported: [...PROMPT_VALUES],
    acr_values_supported: [PASSWORD_ACR],
    backchannel_logout_supported: false,
    backchannel_logout_session_supported: false,
    frontchannel_logout_supported: false,
    claims_parameter_supported: false,
    request_parameter_supported: false,
    request_uri_parameter_supported: false,
  };
}

const openIdProviderMetadataSchema = {
  type: 'object',
  required: [
    'issuer',
    'authorization_endpoint',
    'token_endpoint',
    'jwks_uri',
    'userinfo_endpoint',
    'end_session_endpoint',
    'response_types_supported',
    'subject_types_supported',
    'id_token_signing_alg_values_supported',
  ],
  properties: {
    ...authorizationServerMetadataProperties,
    userinfo_endpoint: { type: 'string' },
    end_session_endpoint: { type: 'string' },
    subject_types_supported: stringArray,
    id_token_signing_alg_values_supported: stringArray,
    claims_supported: stringArray,
    claim_types_supported: stringArray,
    prompt_values_supported: stringArray,
    acr_values_supported: stringArray,
    backchannel_logout_supported: { type: 'boolean' },
    backchannel_logout_session_supported: { type: 'boolean' },
    frontchannel_logout_supported: { type: 'boolean' },
    claims_parameter_supported: { type: 'boolean' },
    request_parameter_supported: { type: 'boolean' },
    request_uri_parameter_supported: { type: 'boolean' },
  },
} as const;

/** GET /.well-known/openid-configuration (OpenID Connect Discovery 1.0 section 4). */
export default async function discovery(app: FastifyInstance) {
  const document = openIdProviderMetadata(app.authorizationServer.issuer, Boolean(app.services.config.authorizationServer.initialAccessToken));
  app.get(
    '/.well-known/openid-configuration',
    { schema: { response: { 200: openIdProviderMetadataSchema } } },
    async (_request, reply) => reply.header('cache-control', 'public, max-age=300').send(document),
  );
}
