import { z } from 'zod';
import type { AirbnbSettings, OAuthClientCredentials } from '../config';
import { classifyOAuthErrorResponse, providerFetch, ProviderError, readProviderJson } from './provider-error';
import type { ProviderTokens, TokenRequestOptions } from './oauth-tokens';
import type { AuthorizationRequest, OAuthProviderAdapter, RevocationOutcome } from './provider';

const PROVIDER = 'Airbnb';
/** What Airbnb states for its access tokens; informational only, since every answer names its own `expires_at`. */
const ACCESS_TOKEN_LIFETIME_SECONDS = 24 * 3600;
const AIRBNB_AUTHORIZATIONS_PATH = '/v2/oauth2/authorizations';

/** Airbnb's token answer: not RFC 6749 (no token_type, no expires_in), an absolute expiry and the host's user id. */
const tokenAnswer = z.object({
  access_token: z.string().min(1),
  expires_at: z.number().int().positive(),
  refresh_token: z.string().min(1).optional(),
  // Airbnb user ids are numbers in JSON; we keep them as text like every other provider account id.
  user_id: z.union([z.string().min(1), z.number().int().nonnegative()]).transform(String),
});

/**
 * Airbnb's partner OAuth, as described in shared/protocols.md: a JSON token endpoint with HTTP Basic
 * client authentication instead of RFC 6749 form posts, refresh tokens that stay valid unless rotation
 * is asked for, and revocation by DELETE on the authorization.
 */
export class AirbnbAdapter implements OAuthProviderAdapter {
  readonly id = 'airbnb' as const;
  readonly kind = 'oauth' as const;
  readonly supportsRevocation = true;
  readonly revocationEndsAccountGrant = true;
  readonly rotatesRefreshTokens = false;

  constructor(
    private readonly settings: AirbnbSettings,
    private readonly credentials: OAuthClientCredentials,
  ) {}

  get scopes(): string[] {
    return this.settings.scopes;
  }

  /**
   * No PKCE: Airbnb's authorization endpoint knows no code_challenge, and its token endpoint takes the
   * code alone. The code is still bound to us: redeeming it needs our client secret, and the single-use
   * state ties the callback to the user who started it.
   */
  authorizationUrl(request: AuthorizationRequest): string {
    const url = new URL(this.settings.authorizeUrl);
    url.search = new URLSearchParams({
      client_id: this.credentials.clientId,
      redirect_uri: request.redirectUri,
      // Airbnb's own examples list scopes with commas.
      scope: this.settings.scopes.join(','),
      state: request.state,
    }).toString();
    return url.toString();
  }

  async exchangeCode(input: { code: string }, options: TokenRequestOptions = {}): Promise<ProviderTokens & { refreshToken: string }> {
    const tokens = await this.tokenRequest({ code: input.code }, options);
    const { refreshToken } = tokens;
    if (!refreshToken) throw new ProviderError('protocol', `${PROVIDER} issued no refresh token for the authorization code`);
    return { ...tokens, refreshToken };
  }

  /**
   * Never asks for rotation (`reset_refresh_token`): Airbnb keeps a refresh token valid without it, and
   * a rotation whose answer is lost (a timeout, a worker killed mid-call) could spend the only token we
   * hold, for as long as Airbnb's grace for a replaced token is unknown.
   */
  refresh(refreshToken: string, options: TokenRequestOptions = {}): Promise<ProviderTokens> {
    return this.tokenRequest({ refresh_token: refreshToken }, options);
  }

  /** Deleting the authorization ends the whole grant, whichever of its tokens names it. */
  async revoke(token: string): Promise<RevocationOutcome> {
    const response = await providerFetch(
      PROVIDER,
      `${this.settings.apiUrl}${AIRBNB_AUTHORIZATIONS_PATH}/${encodeURIComponent(token)}?_unwrapped=true`,
      { method: 'DELETE', headers: { authorization: this.basicAuthorization(), accept: 'application/json' } },
      this.settings.requestTimeoutMs,
    );
    if (response.ok) return 'revoked';
    if (response.status === 404) return 'already_invalid';
    throw await classifyOAuthErrorResponse(PROVIDER, response);
  }

  private async tokenRequest(body: Record<string, string>, options: TokenRequestOptions): Promise<ProviderTokens> {
    const search = new URLSearchParams({ _unwrapped: 'true' });
    const response = await providerFetch(
      PROVIDER,
      `${this.settings.apiUrl}${AIRBNB_AUTHORIZATIONS_PATH}?${search}`,
      {
        method: 'POST',
        headers: { authorization: this.basicAuthorization(), 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        signal: options.signal ?? null,
      },
      this.settings.requestTimeoutMs,
    );
    if (!response.ok) throw await classifyOAuthErrorResponse(PROVIDER, response);
    const answer = await readProviderJson(PROVIDER, 'token response', response, tokenAnswer);
    return {
      accessToken: answer.access_token,
      refreshToken: answer.refresh_token,
      expiresInSeconds: ACCESS_TOKEN_LIFETIME_SECONDS,
      expiresAt: new Date(answer.expires_at * 1000),
      // Airbnb does not say which scopes it granted: the ones asked for stand.
      scopes: undefined,
      accountId: answer.user_id,
    };
  }

  /** Basic credentials as Airbnb documents them (base64 of `id:secret`), without RFC 6749's form-encoding step. */
  private basicAuthorization(): string {
    return `Basic ${Buffer.from(`${this.credentials.clientId}:${this.credentials.clientSecret}`).toString('base64')}`;
  }
}
