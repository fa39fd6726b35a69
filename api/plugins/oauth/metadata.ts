import type { FastifyInstance } from 'fastify';
import { SUPPORTED_GRANT_TYPES } from '../../../platform/oauth-server/clients';
import { TOKEN_ENDPOINT_AUTH_METHODS } from '../../../platform/oauth-server/client-metadata';
import { SUPPORTED_SCOPES } from '../../../platform/oauth-server/scopes';

/** An endpoint's URL under the issuer (which may have a path). */
export function issuerEndpoint(issuer: string, path: string): string {
  return new URL(path, issuer.endsWith('/') ? issuer : `${issuer}/`).toString();
}

/** RFC 8414 authorization server metadata, built once from the configured issuer. */
export function authorizationServerMetadata(issuer: string, registrationEnabled: boolean) {
  const endpoint = (path: string) => issuerEndpoint(issuer, path);
  return {
    issuer,
    authorization_endpoint: endpoint('oauth/authorize'),
    token_endpoint: endpoint('oauth/token'),
    introspection_endpoint: endpoint('oauth/introspect'),
    revocation_endpoint: endpoint('oauth/revoke'),
    // Advertised only when dynamic registration is switched on (OAUTH_INITIAL_ACCESS_TOKEN).
    ...(registrationEnabled ? { registration_endpoint: endpoint('oauth/register') } : {}),
    jwks_uri: endpoint('oauth/jwks'),
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: [...SUPPORTED_GRANT_TYPES],
    token_endpoint_auth_methods_supported: [...TOKEN_ENDPOINT_AUTH_METHODS],
    // Introspection needs a confidential client.
    introspection_endpoint_auth_methods_supported: TOKEN_ENDPOINT_AUTH_METHODS.filter((method) => method !== 'none'),
    revocation_endpoint_auth_methods_supported: [...TOKEN_ENDPOINT_AUTH_METHODS],
    code_challenge_methods_supported: ['S256'],
    scopes_supported: [...SUPPORTED_SCOPES],
    authorization_response_iss_parameter_supported: true,
  };
}

export const stringArray = { type: 'array', items: { type: 'string' } } as const;

/** The response schema's properties of authorizationServerMetadata (the OpenID Provider's document extends them). */
export const authorizationServerMetadataProperties = {
  issuer: { type: 'string' },
  authorization_endpoint: { type: 'string' },
  token_endpoint: { type: 'string' },
  introspection_endpoint: { type: 'string' },
  revocation_endpoint: { type: 'string' },
  registration_endpoint: { type: 'string' },
  jwks_uri: { type: 'string' },
  response_types_supported: stringArray,
  response_modes_supported: stringArray,
  grant_types_supported: stringArray,
  token_endpoint_auth_methods_supported: stringArray,
  introspection_endpoint_auth_methods_supported: stringArray,
  revocation_endpoint_auth_methods_supported: stringArray,
  code_challenge_methods_supported: stringArray,
  scopes_supported: stringArray,
  authorization_response_iss_parameter_supported: { type: 'boolean' },
} as const;

/** GET /.well-known/oauth-authorization-server (RFC 8414 section 3). */
export default async function metadata(app: FastifyInstance) {
  const document = authorizationServerMetadata(app.authorizationServer.issuer, Boolean(app.services.config.authorizationServer.initialAccessToken));
  app.get(
    '/.well-known/oauth-authorization-server',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            properties: authorizationServerMetadataProperties,
          },
        },
      },
    },
    async (_request, reply) => reply.header('cache-control', 'public, max-age=300').send(document),
  );
}
