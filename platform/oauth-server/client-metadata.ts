import type { OAuthClientRow } from '../../db/queries/oauth-clients';
import { redirectUriProblem, SUPPORTED_GRANT_TYPES } from './clients';
import { SUPPORTED_SCOPES } from './scopes';

/**
 * The one validation of client metadata, shared by the admin endpoints and RFC 7591 dynamic
 * registration. It answers with RFC 7591 section 3.2.2 codes, which the admin API reuses as its
 * machine-readable error codes.
 */

export type ClientMetadataErrorCode = 'invalid_redirect_uri' | 'invalid_client_metadata';

export class ClientMetadataError extends Error {
  override name = 'ClientMetadataError';

  constructor(
    readonly code: ClientMetadataErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export type TokenEndpointAuthMethod = OAuthClientRow['tokenEndpointAuthMethod'];
export type ClientKind = OAuthClientRow['kind'];
export type GrantType = (typeof SUPPORTED_GRANT_TYPES)[number];

export const TOKEN_ENDPOINT_AUTH_METHODS: readonly TokenEndpointAuthMethod[] = ['client_secret_basic', 'client_secret_post', 'none'];
export const CLIENT_KINDS: readonly ClientKind[] = ['third_party', 'voice', 'service'];

export const MAX_REDIRECT_URIS = 20;
export const MAX_REDIRECT_URI_LENGTH = 2000;
export const MAX_CLIENT_NAME_LENGTH = 200;

/** What a client may be registered with, before validation (strings, as they arrive). */
export interface ClientMetadataInput {
  name: string;
  redirectUris: string[];
  grantTypes: string[];
  scopes: string[];
  tokenEndpointAuthMethod: string;
  kind: string;
}

/** Metadata that passed validation, deduplicated, ready for registerClient. */
export interface ValidClientMetadata {
  name: string;
  redirectUris: string[];
  grantTypes: GrantType[];
  scopes: string[];
  tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  kind: ClientKind;
}

// Control characters and whitespace: the URL parser silently strips or encodes some of them, so the
// registered string would not be the URI a browser ends up at; NUL would also fail in Postgres.
// eslint-disable-next-line no-control-regex
const UNSAFE_CHARACTERS = /[\u0000-\u0020\u007f-\u009f\u2028\u2029]/;

// Bidirectional formatting characters (embeddings, overrides, isolates, marks): in a name they can make
// the consent page show text in an order other than the one registered ("Trusted\u202Eppa" and the like).
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

function unique<T>(values: readonly T[]): T[] {
  return [...new Set(values)];
}

/**
 * A list of redirect URIs a client may register (also used when an operator replaces the list):
 * each absolute, https or loopback http, no fragment, no credentials (redirectUriProblem), and
 * nothing a URL parser would rewrite. Throws `invalid_redirect_uri`.
 */
export function validateRedirectUris(redirectUris: readonly string[], grantTypes: readonly string[]): string[] {
  if (redirectUris.length > MAX_REDIRECT_URIS) {
    throw new ClientMetadataError('invalid_redirect_uri', `at most ${MAX_REDIRECT_URIS} redirect URIs may be registered`);
  }
  for (const uri of redirectUris) {
    if (typeof uri !== 'string' || uri.length === 0) throw new ClientMetadataError('invalid_redirect_uri', 'a redirect URI must be a non-empty string');
    if (uri.length > MAX_REDIRECT_URI_LENGTH) {
      throw new ClientMetadataError('invalid_redirect_uri', `a redirect URI must be at most ${MAX_REDIRECT_URI_LENGTH} characters long`);
    }
    if (UNSAFE_CHARACTERS.test(uri)) throw new ClientMetadataError('invalid_redirect_uri', 'a redirect URI must not contain whitespace or control characters');
    const problem = redirectUriProblem(uri);
    if (problem) throw new ClientMetadataError('invalid_redirect_uri', `redirect URI ${JSON.stringify(uri)} ${problem}`);
  }
  if (grantTypes.includes('authorization_code') && redirectUris.length === 0) {
    throw new ClientMetadataError('invalid_redirect_uri', 'authorization_code needs at least one redirect URI');
  }
  if (!grantTypes.includes('authorization_code') && redirectUris.length > 0) {
    throw new ClientMetadataError('invalid_redirect_uri', 'redirect URIs are only used by authorization_code clients');
  }
  return unique(redirectUris);
}

/**
 * Checks a whole client registration:
 * - name: non-empty, printable (no bidirectional formatting characters), at most MAX_CLIENT_NAME_LENGTH characters;
 * - grant_types: a non-empty subset of SUPPORTED_GRANT_TYPES; refresh_token only with authorization_code;
 *   client_credentials only for confidential clients (public clients, auth method none, cannot have it);
 * - scopes: a subset of SUPPORTED_SCOPES;
 * - redirect URIs: see validateRedirectUris (authorization_code needs at least one);
 * - kind: voice clients (Alexa, Google Home) are confidential authorization_code clients, since they
 *   get year-long refresh tokens; service clients use client_credentials only.
 */
export function validateClientMetadata(input: ClientMetadataInput): ValidClientMetadata {
  const invalid = (message: string) => new ClientMetadataError('invalid_client_metadata', message);

  const name = input.name.trim();
  if (name.length === 0) throw invalid('the client name must not be empty');
  if (name.length > MAX_CLIENT_NAME_LENGTH) throw invalid(`the client name must be at most ${MAX_CLIENT_NAME_LENGTH} characters long`);
  if (UNSAFE_CHARACTERS.test(name.replace(/ /g, ''))) throw invalid('the client name must not contain control characters');
  if (BIDI_CONTROLS.test(name)) throw invalid('the client name must not contain bidirectional formatting characters');

  if (!(TOKEN_ENDPOINT_AUTH_METHODS as readonly string[]).includes(input.tokenEndpointAuthMethod)) {
    throw invalid(`token_endpoint_auth_method must be one of ${TOKEN_ENDPOINT_AUTH_METHODS.join(', ')}`);
  }
  const tokenEndpointAuthMethod = input.tokenEndpointAuthMethod as TokenEndpointAuthMethod;
  if (!(CLIENT_KINDS as readonly string[]).includes(input.kind)) throw invalid(`kind must be one of ${CLIENT_KINDS.join(', ')}`);
  const kind = input.kind as ClientKind;

  const grantTypes = unique(input.grantTypes);
  if (grantTypes.length === 0) throw invalid('grant_types must name at least one grant type');
  const unknownGrants = grantTypes.filter((grant) => !(SUPPORTED_GRANT_TYPES as readonly string[]).includes(grant));
  if (unknownGrants.length > 0) {
    throw invalid(`unsupported grant type(s): ${unknownGrants.join(', ')} (supported: ${SUPPORTED_GRANT_TYPES.join(', ')})`);
  }
  if (grantTypes.includes('refresh_token') && !grantTypes.includes('authorization_code')) {
    throw invalid('refresh_token is only available together with authorization_code');
  }
  const confidential = tokenEndpointAuthMethod !== 'none';
  if (grantTypes.includes('client_credentials') && !confidential) {
    throw invalid('client_credentials needs a confidential client (token_endpoint_auth_method none cannot use it)');
  }
  if (kind === 'voice' && (!confidential || !grantTypes.includes('authorization_code'))) {
    throw invalid('voice clients must be confidential authorization_code clients');
  }
  if (kind === 'service' && (grantTypes.length !== 1 || grantTypes[0] !== 'client_credentials')) {
    throw invalid('service clients use client_credentials only');
  }

  const scopes = unique(input.scopes);
  const unknownScopes = scopes.filter((scope) => !SUPPORTED_SCOPES.includes(scope));
  if (unknownScopes.length > 0) throw invalid(`unsupported scope(s): ${unknownScopes.join(' ')} (supported: ${SUPPORTED_SCOPES.join(' ')})`);
  if (scopes.length === 0) throw invalid('a client needs at least one scope');

  const redirectUris = validateRedirectUris(input.redirectUris, grantTypes);
  return { name, redirectUris, grantTypes: grantTypes as GrantType[], scopes, tokenEndpointAuthMethod, kind };
}

/** The JSON form of a client the admin API and dynamic registration answer with (never a secret). */
export function clientMetadataView(client: OAuthClientRow) {
  return {
    client_id: client.id,
    name: client.name,
    client_type: client.clientType,
    token_endpoint_auth_method: client.tokenEndpointAuthMethod,
    redirect_uris: client.redirectUris,
    grant_types: client.grantTypes,
    response_types: client.grantTypes.includes('authorization_code') ? ['code'] : [],
    scope: client.scopes.join(' '),
    scopes: client.scopes,
    kind: client.kind,
    registered_by: client.registeredBy,
    created_at: new Date(client.createdAt).toISOString(),
    secret_rotated_at: client.secretRotatedAt === null ? null : new Date(client.secretRotatedAt).toISOString(),
    revoked_at: client.revokedAt === null ? null : new Date(client.revokedAt).toISOString(),
  };
}

/** JSON schema of clientMetadataView, for response schemas. */
export const clientMetadataViewSchema = {
  type: 'object',
  required: ['client_id', 'name', 'client_type', 'token_endpoint_auth_method', 'redirect_uris', 'grant_types', 'scopes', 'kind', 'registered_by', 'created_at'],
  properties: {
    client_id: { type: 'string' },
    name: { type: 'string' },
    client_type: { type: 'string' },
    token_endpoint_auth_method: { type: 'string' },
    redirect_uris: { type: 'array', items: { type: 'string' } },
    grant_types: { type: 'array', items: { type: 'string' } },
    response_types: { type: 'array', items: { type: 'string' } },
    scope: { type: 'string' },
    scopes: { type: 'array', items: { type: 'string' } },
    kind: { type: 'string' },
    registered_by: { type: 'string' },
    created_at: { type: 'string' },
    secret_rotated_at: { type: ['string', 'null'] },
    revoked_at: { type: ['string', 'null'] },
  },
} as const;
