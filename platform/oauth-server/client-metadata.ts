import type { OAuthClientRow } from '../../db/queries/oauth-clients';
import type { Config } from '../config';
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
export type VoicePlatform = NonNullable<OAuthClientRow['voicePlatform']>;

export const TOKEN_ENDPOINT_AUTH_METHODS: readonly TokenEndpointAuthMethod[] = ['client_secret_basic', 'client_secret_post', 'none'];
export const CLIENT_KINDS: readonly ClientKind[] = ['third_party', 'voice', 'service'];
export const VOICE_PLATFORMS: readonly VoicePlatform[] = ['alexa', 'google'];

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
  /** Only for kind voice, which needs it. */
  voicePlatform?: string | undefined;
  /** OpenID Connect: set by operators only (never by dynamic registration). */
  firstParty?: boolean | undefined;
  postLogoutRedirectUris?: string[] | undefined;
  /** The Reality Portal's client only (validateBackchannelLogoutUri). */
  backchannelLogoutUri?: string | undefined;
  /** The id the client will have, when chosen before registration: only the portal's configured client's is. */
  clientId?: string | undefined;
}

/**
 * Where the rules differ by deployment: back-channel logout over http to a loopback address only
 * outside production, and only for the client that receives logout tokens.
 */
export interface ClientMetadataEnvironment {
  production: boolean;
  /** REALITY_OIDC_CLIENT_ID: the one client the SSO session workflow sends logout tokens to. Absent: none may register a backchannel_logout_uri. */
  portalClientId?: string | undefined;
}

export function clientMetadataEnvironment(config: Pick<Config, 'appEnv' | 'sso'>): ClientMetadataEnvironment {
  return { production: config.appEnv === 'production', portalClientId: config.sso.portal.clientId };
}

/** Metadata that passed validation, deduplicated, ready for registerClient. */
export interface ValidClientMetadata {
  name: string;
  redirectUris: string[];
  grantTypes: GrantType[];
  scopes: string[];
  tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  kind: ClientKind;
  voicePlatform: VoicePlatform | null;
  firstParty: boolean;
  postLogoutRedirectUris: string[];
  backchannelLogoutUri: string | null;
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
 * How each voice platform links accounts (protocols.md "Amazon Alexa", "Google Home"): the hosts it
 * sends users back to, whose last path segment is the skill vendor's id (Alexa) or the Cloud
 * project's id (Google), and how it authenticates at our token endpoint. Alexa can be set to HTTP
 * Basic or to credentials in the body; Google sends them in the body. Alexa sends PKCE; Google's
 * account linking sends none (a plain authorization code request, secret in the token request).
 */
export const VOICE_PLATFORM_RULES: Record<
  VoicePlatform,
  {
    /** What the consent page calls the platform: Google asks to be named "Google", never one of its products. */
    displayName: string;
    redirectHosts: readonly string[];
    redirectPath: string;
    /** The characters ALEXA_VENDOR_ID and GOOGLE_HOME_PROJECT_ID allow (platform/config.ts), at most 64 of them. */
    accountId: RegExp;
    accountIdName: string;
    tokenEndpointAuthMethods: readonly TokenEndpointAuthMethod[];
    /** Whether the platform sends a PKCE challenge; see mayOmitPkce. */
    sendsPkce: boolean;
  }
> = {
  alexa: {
    displayName: 'Alexa',
    redirectHosts: ['pitangui.amazon.com', 'layla.amazon.com', 'alexa.amazon.co.jp'],
    redirectPath: '/api/skill/link/',
    accountId: /^[A-Za-z0-9]{1,64}$/,
    accountIdName: 'vendor id',
    tokenEndpointAuthMethods: ['client_secret_basic', 'client_secret_post'],
    sendsPkce: true,
  },
  google: {
    displayName: 'Google',
    redirectHosts: ['oauth-redirect.googleusercontent.com', 'oauth-redirect-sandbox.googleusercontent.com'],
    redirectPath: '/r/',
    accountId: /^[a-z0-9-]{1,64}$/,
    accountIdName: 'project id',
    tokenEndpointAuthMethods: ['client_secret_post'],
    sendsPkce: false,
  },
};

/**
 * Whether a client may send an authorization request without a PKCE challenge: only a confidential
 * voice client of a platform that sends none (Google). RFC 9700 section 2.1.1 allows that for
 * confidential clients when the server refuses a PKCE downgrade, which the token endpoint does: a code
 * issued without a challenge is never redeemed with a code_verifier. Every other client sends S256.
 */
export function mayOmitPkce(client: Pick<OAuthClientRow, 'kind' | 'clientType' | 'voicePlatform'>): boolean {
  return client.kind === 'voice' && client.clientType === 'confidential' && client.voicePlatform !== null && !VOICE_PLATFORM_RULES[client.voicePlatform].sendsPkce;
}

/** Every redirect URI of a platform for one skill vendor (Alexa) or Cloud project (Google). Throws `invalid_client_metadata`. */
export function voiceRedirectUris(platform: VoicePlatform, accountId: string): string[] {
  const rules = VOICE_PLATFORM_RULES[platform];
  if (!rules.accountId.test(accountId)) {
    throw new ClientMetadataError('invalid_client_metadata', `${JSON.stringify(accountId)} is not a valid ${platform} ${rules.accountIdName}`);
  }
  return rules.redirectHosts.map((host) => `https://${host}${rules.redirectPath}${accountId}`);
}

/** The vendor or project id a redirect URI of the platform names; undefined when it is not one of the platform's. */
function voiceRedirectAccount(platform: VoicePlatform, uri: string): string | undefined {
  const accountId = uri.slice(uri.lastIndexOf('/') + 1);
  if (!VOICE_PLATFORM_RULES[platform].accountId.test(accountId)) return undefined;
  return voiceRedirectUris(platform, accountId).includes(uri) ? accountId : undefined;
}

/** A voice client returns users only to its platform, for one vendor or project. Throws `invalid_redirect_uri`. */
function checkVoiceRedirectUris(platform: VoicePlatform, redirectUris: readonly string[]): void {
  const rules = VOICE_PLATFORM_RULES[platform];
  const accounts = new Set<string>();
  for (const uri of redirectUris) {
    const accountId = voiceRedirectAccount(platform, uri);
    if (accountId === undefined) {
      const shapes = rules.redirectHosts.map((host) => `https://${host}${rules.redirectPath}<${rules.accountIdName}>`).join(', ');
      throw new ClientMetadataError('invalid_redirect_uri', `redirect URI ${JSON.stringify(uri)} is not one of ${rules.displayName}'s: ${shapes}`);
    }
    accounts.add(accountId);
  }
  if (accounts.size > 1) throw new ClientMetadataError('invalid_redirect_uri', `the redirect URIs of one ${platform} client name one ${rules.accountIdName}`);
}

/**
 * A list of redirect URIs a client may register (also used when an operator replaces the list):
 * each absolute, https or loopback http, no fragment, no credentials (redirectUriProblem), and
 * nothing a URL parser would rewrite; a voice client's only its platform's. Throws `invalid_redirect_uri`.
 */
export function validateRedirectUris(redirectUris: readonly string[], grantTypes: readonly string[], voicePlatform: VoicePlatform | null = null): string[] {
  if (redirectUris.length > MAX_REDIRECT_URIS) {
    throw new ClientMetadataError('invalid_redirect_uri', `at most ${MAX_REDIRECT_URIS} redirect URIs may be registered`);
  }
  for (const uri of redirectUris) {
    checkRegisteredUri(uri, 'redirect URI');
    const problem = redirectUriProblem(uri);
    if (problem) throw new ClientMetadataError('invalid_redirect_uri', `redirect URI ${JSON.stringify(uri)} ${problem}`);
  }
  if (grantTypes.includes('authorization_code') && redirectUris.length === 0) {
    throw new ClientMetadataError('invalid_redirect_uri', 'authorization_code needs at least one redirect URI');
  }
  if (!grantTypes.includes('authorization_code') && redirectUris.length > 0) {
    throw new ClientMetadataError('invalid_redirect_uri', 'redirect URIs are only used by authorization_code clients');
  }
  if (voicePlatform !== null) checkVoiceRedirectUris(voicePlatform, redirectUris);
  return unique(redirectUris);
}

/** One URI a client registers: a non-empty string, bounded, with nothing a URL parser would rewrite. */
function checkRegisteredUri(uri: unknown, what: string, code: ClientMetadataErrorCode = 'invalid_redirect_uri'): asserts uri is string {
  if (typeof uri !== 'string' || uri.length === 0) throw new ClientMetadataError(code, `a ${what} must be a non-empty string`);
  if (uri.length > MAX_REDIRECT_URI_LENGTH) throw new ClientMetadataError(code, `a ${what} must be at most ${MAX_REDIRECT_URI_LENGTH} characters long`);
  if (UNSAFE_CHARACTERS.test(uri)) throw new ClientMetadataError(code, `a ${what} must not contain whitespace or control characters`);
}

/**
 * OpenID Connect RP-Initiated Logout 1.0 section 3.1: where a client may send the browser after logout.
 * The rules of redirect URIs (redirectUriProblem), matched exactly, for authorization_code clients only
 * (logout names a client by its id_token). Throws `invalid_redirect_uri`.
 */
export function validatePostLogoutRedirectUris(uris: readonly string[], grantTypes: readonly string[]): string[] {
  if (uris.length > MAX_REDIRECT_URIS) throw new ClientMetadataError('invalid_redirect_uri', `at most ${MAX_REDIRECT_URIS} post-logout redirect URIs may be registered`);
  for (const uri of uris) {
    checkRegisteredUri(uri, 'post-logout redirect URI');
    const problem = redirectUriProblem(uri);
    if (problem) throw new ClientMetadataError('invalid_redirect_uri', `post-logout redirect URI ${JSON.stringify(uri)} ${problem}`);
  }
  if (uris.length > 0 && !grantTypes.includes('authorization_code')) {
    throw new ClientMetadataError('invalid_redirect_uri', 'post-logout redirect URIs are only used by authorization_code clients');
  }
  return unique(uris);
}

/** Why any other client cannot register a back-channel logout URI, as its error says it. */
export const BACKCHANNEL_LOGOUT_PORTAL_ONLY =
  "backchannel_logout_uri is accepted for the Reality Portal's client only: logout tokens are delivered to it alone; " +
  'other relying parties use RP-initiated logout (end_session_endpoint) and see a session end when userinfo or a refresh is refused';

/** Why the portal's client cannot keep one without being first-party. */
export const BACKCHANNEL_LOGOUT_FIRST_PARTY = "backchannel_logout_uri needs first_party: true, as the Reality Portal's client has";

/**
 * OpenID Connect Back-Channel Logout 1.0 section 2.2: where logout tokens are posted. Absolute, no
 * fragment, a DNS name or IP literal; https, or http on 127.0.0.1 or [::1] outside production (the
 * development portal). Only for the Reality Portal's client (environment.portalClientId), first-party:
 * only the SSO session workflow sends logout tokens, and only to the portal, so any other client
 * registering one would wait for tokens that never come. Throws `invalid_client_metadata`.
 */
export function validateBackchannelLogoutUri(
  uri: string | null,
  client: { id: string | undefined; grantTypes: readonly string[]; firstParty: boolean },
  environment: ClientMetadataEnvironment,
): string | null {
  if (uri === null) return null;
  const invalid = (message: string) => new ClientMetadataError('invalid_client_metadata', message);
  if (client.id === undefined || client.id !== environment.portalClientId) throw invalid(BACKCHANNEL_LOGOUT_PORTAL_ONLY);
  checkRegisteredUri(uri, 'backchannel_logout_uri', 'invalid_client_metadata');
  const problem = redirectUriProblem(uri);
  if (problem) throw invalid(`backchannel_logout_uri ${problem}`);
  if (environment.production && new URL(uri).protocol !== 'https:') throw invalid('backchannel_logout_uri must use https');
  if (!client.grantTypes.includes('authorization_code')) throw invalid('backchannel_logout_uri is only used by authorization_code clients');
  if (!client.firstParty) throw invalid(BACKCHANNEL_LOGOUT_FIRST_PARTY);
  return uri;
}

/**
 * Checks a whole client registration:
 * - name: non-empty, printable (no bidirectional formatting characters), at most MAX_CLIENT_NAME_LENGTH characters;
 * - grant_types: a non-empty subset of SUPPORTED_GRANT_TYPES; refresh_token only with authorization_code;
 *   client_credentials only for confidential clients (public clients, auth method none, cannot have it);
 * - scopes: a subset of SUPPORTED_SCOPES;
 * - redirect URIs: see validateRedirectUris (authorization_code needs at least one);
 * - kind: voice clients (Alexa, Google Home) name their voice_platform and are confidential clients
 *   with exactly authorization_code and refresh_token, since they get year-long refresh tokens, and
 *   authenticate and redirect as their platform does (VOICE_PLATFORM_RULES); service clients use
 *   client_credentials only;
 * - OpenID Connect: post-logout redirect URIs and the back-channel logout URI (see their validators;
 *   the latter for the Reality Portal's client only); first_party (no consent page) only for confidential
 *   clients, since anyone can pose as a public one.
 */
export function validateClientMetadata(input: ClientMetadataInput, environment: ClientMetadataEnvironment = { production: true }): ValidClientMetadata {
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
  const voicePlatform = validVoicePlatform(input.voicePlatform, kind, tokenEndpointAuthMethod, grantTypes);
  if (kind === 'service' && (grantTypes.length !== 1 || grantTypes[0] !== 'client_credentials')) {
    throw invalid('service clients use client_credentials only');
  }

  const scopes = unique(input.scopes);
  const unknownScopes = scopes.filter((scope) => !SUPPORTED_SCOPES.includes(scope));
  if (unknownScopes.length > 0) throw invalid(`unsupported scope(s): ${unknownScopes.join(' ')} (supported: ${SUPPORTED_SCOPES.join(' ')})`);
  if (scopes.length === 0) throw invalid('a client needs at least one scope');
  if (voicePlatform !== null) checkVoiceClientScopes(voicePlatform, scopes);

  const redirectUris = validateRedirectUris(input.redirectUris, grantTypes, voicePlatform);
  const firstParty = input.firstParty ?? false;
  if (firstParty && !confidential) throw invalid('a first-party client must be confidential: anyone can pose as a public client');
  return {
    name,
    redirectUris,
    grantTypes: grantTypes as GrantType[],
    scopes,
    tokenEndpointAuthMethod,
    kind,
    voicePlatform,
    firstParty,
    postLogoutRedirectUris: validatePostLogoutRedirectUris(input.postLogoutRedirectUris ?? [], grantTypes),
    backchannelLogoutUri: validateBackchannelLogoutUri(input.backchannelLogoutUri ?? null, { id: input.clientId, grantTypes, firstParty }, environment),
  };
}

/** What Amazon's skill manifest takes (its domains, at most 15 too, are only the hosts of OAUTH_ISSUER and PUBLIC_BASE_URL). */
export const ALEXA_MANIFEST_MAX_SCOPES = 15;

/** An Alexa client whose manifest Amazon would refuse is never made. Throws `invalid_client_metadata`. */
export function checkVoiceClientScopes(platform: VoicePlatform, scopes: readonly string[]): void {
  if (platform === 'alexa' && scopes.length > ALEXA_MANIFEST_MAX_SCOPES) {
    throw new ClientMetadataError('invalid_client_metadata', `an Alexa client has at most ${ALEXA_MANIFEST_MAX_SCOPES} scopes (the skill manifest's limit)`);
  }
}

function validVoicePlatform(
  given: string | undefined,
  kind: ClientKind,
  tokenEndpointAuthMethod: TokenEndpointAuthMethod,
  grantTypes: readonly string[],
): VoicePlatform | null {
  const invalid = (message: string) => new ClientMetadataError('invalid_client_metadata', message);
  if (given !== undefined && !(VOICE_PLATFORMS as readonly string[]).includes(given)) throw invalid(`voice_platform must be one of ${VOICE_PLATFORMS.join(', ')}`);
  if (kind !== 'voice') {
    if (given !== undefined) throw invalid('voice_platform is only for voice clients');
    return null;
  }
  if (given === undefined) throw invalid(`a voice client names its platform: voice_platform ${VOICE_PLATFORMS.join(' or ')}`);
  const platform = given as VoicePlatform;
  const { displayName, tokenEndpointAuthMethods } = VOICE_PLATFORM_RULES[platform];
  if (grantTypes.length !== 2 || !grantTypes.includes('authorization_code') || !grantTypes.includes('refresh_token')) {
    throw invalid('voice clients use exactly the authorization_code and refresh_token grants');
  }
  if (!tokenEndpointAuthMethods.includes(tokenEndpointAuthMethod)) {
    throw invalid(`${displayName} authenticates with ${tokenEndpointAuthMethods.join(' or ')}`);
  }
  return platform;
}

/**
 * What a voice client may read and do unless the operator says otherwise: the voice commands answer
 * from the user's properties and reservations, and devices:control tells the user it is by voice.
 */
export const VOICE_CLIENT_DEFAULT_SCOPES = ['devices:control', 'properties:read', 'reservations:read'];

/** An operator's request for a voice client; everything but the platform has a default. */
export interface VoiceClientRequest {
  platform: string;
  name?: string | undefined;
  /** Alexa only: the skill vendor's id (default ALEXA_VENDOR_ID). */
  vendorId?: string | undefined;
  /** Google only: the Cloud project's id (default GOOGLE_HOME_PROJECT_ID). */
  projectId?: string | undefined;
  /** Alexa: client_secret_basic (HTTP_BASIC, the default) or client_secret_post (REQUEST_BODY_CREDENTIALS). */
  tokenEndpointAuthMethod?: string | undefined;
  scopes?: string[] | undefined;
}

/**
 * The whole client a voice platform needs, from the few things that differ between skills and
 * projects: its redirect URIs (every regional or sandbox host), grants, authentication and scopes,
 * checked by validateClientMetadata like any other client. Throws ClientMetadataError.
 */
export function voiceClientMetadata(request: VoiceClientRequest, defaults: { alexaVendorId: string | undefined; googleProjectId: string | undefined }): ValidClientMetadata {
  const invalid = (message: string) => new ClientMetadataError('invalid_client_metadata', message);
  let accountId: string | undefined;
  if (request.platform === 'alexa') {
    if (request.projectId !== undefined) throw invalid('project_id is for Google clients; an Alexa client takes vendor_id');
    accountId = request.vendorId ?? defaults.alexaVendorId;
    if (accountId === undefined) throw invalid('vendor_id is required for an Alexa client (or set ALEXA_VENDOR_ID)');
  } else if (request.platform === 'google') {
    if (request.vendorId !== undefined) throw invalid('vendor_id is for Alexa clients; a Google client takes project_id');
    accountId = request.projectId ?? defaults.googleProjectId;
    if (accountId === undefined) throw invalid('project_id is required for a Google client (or set GOOGLE_HOME_PROJECT_ID)');
  } else {
    throw invalid(`platform must be one of ${VOICE_PLATFORMS.join(', ')}`);
  }
  const platform: VoicePlatform = request.platform;
  return validateClientMetadata({
    name: request.name ?? VOICE_PLATFORM_RULES[platform].displayName,
    redirectUris: voiceRedirectUris(platform, accountId),
    grantTypes: ['authorization_code', 'refresh_token'],
    scopes: request.scopes ?? VOICE_CLIENT_DEFAULT_SCOPES,
    tokenEndpointAuthMethod: request.tokenEndpointAuthMethod ?? VOICE_PLATFORM_RULES[platform].tokenEndpointAuthMethods[0]!,
    kind: 'voice',
    voicePlatform: platform,
  });
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
    voice_platform: client.voicePlatform,
    first_party: client.firstParty,
    post_logout_redirect_uris: client.postLogoutRedirectUris,
    backchannel_logout_uri: client.backchannelLogoutUri,
    registered_by: client.registeredBy,
    created_at: new Date(client.createdAt).toISOString(),
    secret_rotated_at: client.secretRotatedAt === null ? null : new Date(client.secretRotatedAt).toISOString(),
    revoked_at: client.revokedAt === null ? null : new Date(client.revokedAt).toISOString(),
  };
}

/** JSON schema of clientMetadataView, for response schemas. */
export const clientMetadataViewSchema = {
  type: 'object',
  required: ['client_id', 'name', 'client_type', 'token_endpoint_auth_method', 'redirect_uris', 'grant_types', 'scopes', 'kind', 'voice_platform', 'registered_by', 'created_at'],
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
    voice_platform: { type: ['string', 'null'] },
    first_party: { type: 'boolean' },
    post_logout_redirect_uris: { type: 'array', items: { type: 'string' } },
    backchannel_logout_uri: { type: ['string', 'null'] },
    registered_by: { type: 'string' },
    created_at: { type: 'string' },
    secret_rotated_at: { type: ['string', 'null'] },
    revoked_at: { type: ['string', 'null'] },
  },
} as const;
