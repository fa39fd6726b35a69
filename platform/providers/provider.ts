import type { Config } from '../config';
import { GoogleCalendarAdapter } from './google-calendar';
import type { ProviderTokens } from './oauth-tokens';

/** The providers a user can connect. The id appears in URLs, workflow ids and the database. */
export const PROVIDER_IDS = ['google-calendar'] as const;
export type ProviderId = (typeof PROVIDER_IDS)[number];

export interface AuthorizationRequest {
  state: string;
  codeChallenge: string;
  redirectUri: string;
}

export type RevocationOutcome = 'revoked' | 'already_invalid';

/** One adapter per provider: the only code that knows a provider's wire protocol. */
export interface OAuthProviderAdapter {
  readonly id: ProviderId;
  readonly scopes: string[];
  authorizationUrl(request: AuthorizationRequest): string;
  /** Answers only with a refresh token: a grant we cannot keep alive is refused as a protocol error. */
  exchangeCode(input: { code: string; codeVerifier: string; redirectUri: string }): Promise<ProviderTokens & { refreshToken: string }>;
  refresh(refreshToken: string): Promise<ProviderTokens>;
  revoke(token: string): Promise<RevocationOutcome>;
}

export type ProviderRegistry = Partial<Record<ProviderId, OAuthProviderAdapter>>;

/** Providers without credentials are left out: their routes answer that the provider is not configured. */
export function createProviderRegistry(config: Config): ProviderRegistry {
  return {
    ...(config.google.credentials ? { 'google-calendar': new GoogleCalendarAdapter(config.google, config.google.credentials) } : {}),
  };
}

export function redirectUriFor(publicBaseUrl: string, provider: ProviderId): string {
  return `${publicBaseUrl}/api/v1/integrations/${provider}/callback`;
}
