import type { ProviderTokens, TokenRequestOptions } from './oauth-tokens';

/** The providers a user can connect. The id appears in URLs, workflow ids and the database. */
export const PROVIDER_IDS = ['google-calendar', 'microsoft-calendar', 'airbnb', 'booking-com'] as const;
export type ProviderId = (typeof PROVIDER_IDS)[number];

/** Providers the user authorizes in the browser; the others (Booking.com) take machine-account credentials. */
export const OAUTH_PROVIDER_IDS = ['google-calendar', 'microsoft-calendar', 'airbnb'] as const satisfies readonly ProviderId[];
export type OAuthProviderId = (typeof OAUTH_PROVIDER_IDS)[number];

export interface AuthorizationRequest {
  state: string;
  codeChallenge: string;
  redirectUri: string;
}

/** `not_supported`: the provider has no per-grant revocation (Microsoft, Booking.com); wiping our copy is all there is. */
export type RevocationOutcome = 'revoked' | 'already_invalid' | 'not_supported';

/**
 * What the refresh and disconnect activities need of every provider. The long-lived secret is the
 * refresh token for OAuth providers and the machine-account credentials for Booking.com; it is stored
 * in `refresh_token_enc` either way, because it plays the same part: it mints access tokens.
 */
export interface CredentialAdapter {
  readonly id: ProviderId;
  readonly scopes: string[];
  /** False where revoke() can only answer `not_supported`; the status endpoint tells the user so. */
  readonly supportsRevocation: boolean;
  /**
   * True where revoking any one token ends the app's whole grant for that provider account (Google,
   * Airbnb): every token of every consent of that account dies with it, so a revocation must not run
   * while a connection we keep holds a grant of the same account.
   */
  readonly revocationEndsAccountGrant: boolean;
  /**
   * True where a refresh answers with a new refresh token and the one presented may die with it
   * (Microsoft): a refresh whose answer was lost can leave us holding only dead tokens. Elsewhere a
   * refused refresh token was revoked, whatever happened to an earlier call.
   */
  readonly rotatesRefreshTokens: boolean;
  refresh(longLivedSecret: string, options?: TokenRequestOptions): Promise<ProviderTokens>;
  revoke(token: string): Promise<RevocationOutcome>;
}

/** One adapter per provider: the only code that knows a provider's wire protocol. */
export interface OAuthProviderAdapter extends CredentialAdapter {
  readonly kind: 'oauth';
  authorizationUrl(request: AuthorizationRequest): string;
  /** Answers only with a refresh token: a grant we cannot keep alive is refused as a protocol error. */
  exchangeCode(input: { code: string; codeVerifier: string; redirectUri: string }, options?: TokenRequestOptions): Promise<ProviderTokens & { refreshToken: string }>;
}

export interface MachineAccountAdapter extends CredentialAdapter {
  readonly kind: 'machine-account';
}

export type ProviderAdapter = OAuthProviderAdapter | MachineAccountAdapter;
export type ProviderRegistry = Partial<Record<ProviderId, ProviderAdapter>>;

export function redirectUriFor(publicBaseUrl: string, provider: ProviderId): string {
  return `${publicBaseUrl}/api/v1/integrations/${provider}/callback`;
}
