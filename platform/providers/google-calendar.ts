import { decodeJwt } from 'jose';
import { z } from 'zod';
import type { GoogleSettings, OAuthClientCredentials } from '../config';
import { classifyOAuthErrorResponse, providerFetch, ProviderError } from './provider-error';
import { readStandardTokenResponse, type ProviderTokens, type TokenRequestOptions } from './oauth-tokens';
import type { AuthorizationRequest, OAuthProviderAdapter, RevocationOutcome } from './provider';

const PROVIDER = 'Google';
const idTokenField = z.object({ id_token: z.string().min(1).optional() });

/** Google's OAuth 2.0 endpoints, as described in shared/protocols.md. */
export class GoogleCalendarAdapter implements OAuthProviderAdapter {
  readonly id = 'google-calendar' as const;
  readonly kind = 'oauth' as const;
  readonly supportsRevocation = true;
  readonly revocationEndsAccountGrant = true;
  readonly rotatesRefreshTokens = false;

  constructor(
    private readonly settings: GoogleSettings,
    private readonly credentials: OAuthClientCredentials,
  ) {}

  get scopes(): string[] {
    return this.settings.scopes;
  }

  authorizationUrl(request: AuthorizationRequest): string {
    const url = new URL(this.settings.authorizeUrl);
    url.search = new URLSearchParams({
      client_id: this.credentials.clientId,
      redirect_uri: request.redirectUri,
      response_type: 'code',
      scope: this.settings.scopes.join(' '),
      state: request.state,
      code_challenge: request.codeChallenge,
      code_challenge_method: 'S256',
      // offline + consent: without both, a returning user gets no refresh token.
      access_type: 'offline',
      prompt: 'consent',
      include_granted_scopes: 'true',
    }).toString();
    return url.toString();
  }

  async exchangeCode(input: { code: string; codeVerifier: string; redirectUri: string }, options: TokenRequestOptions = {}): Promise<ProviderTokens & { refreshToken: string }> {
    const response = await this.tokenRequest(
      { grant_type: 'authorization_code', code: input.code, code_verifier: input.codeVerifier, redirect_uri: input.redirectUri },
      options,
    );
    const tokens = await readStandardTokenResponse(PROVIDER, response.clone());
    const { refreshToken } = tokens;
    if (!refreshToken) throw new ProviderError('protocol', `${PROVIDER} issued no refresh token: access_type=offline was not honoured`);
    const accountId = await this.accountIdOf(response);
    return { ...tokens, refreshToken, ...(accountId === undefined ? {} : { accountId }) };
  }

  async refresh(refreshToken: string, options: TokenRequestOptions = {}): Promise<ProviderTokens> {
    return readStandardTokenResponse(PROVIDER, await this.tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshToken }, options));
  }

  /** Revoking the refresh token ends the whole grant, access tokens included. */
  async revoke(token: string): Promise<RevocationOutcome> {
    const response = await providerFetch(PROVIDER, this.settings.revokeUrl, this.formPost({ token }), this.settings.requestTimeoutMs);
    if (response.ok) return 'revoked';
    const error = await classifyOAuthErrorResponse(PROVIDER, response);
    // Google answers 400 invalid_token for a token that is already dead: the goal is reached.
    if (error.details.providerCode === 'invalid_token') return 'already_invalid';
    throw error;
  }

  /**
   * The Google account that granted access (`sub` of the id_token, present when `openid` was asked for),
   * which RISC security events name. The id_token came straight from Google's token endpoint over TLS, so
   * OpenID Connect Core 3.1.3.7 lets us skip its signature; its audience must still be us.
   */
  private async accountIdOf(response: Response): Promise<string | undefined> {
    const parsed = idTokenField.safeParse(await response.json().catch(() => undefined));
    const idToken = parsed.success ? parsed.data.id_token : undefined;
    if (idToken === undefined) return undefined;
    let claims: ReturnType<typeof decodeJwt>;
    try {
      claims = decodeJwt(idToken);
    } catch {
      throw new ProviderError('protocol', `${PROVIDER} issued an id_token that is not a JWT`);
    }
    const audiences = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
    if (!audiences.includes(this.credentials.clientId) || !claims.sub) {
      throw new ProviderError('protocol', `${PROVIDER} issued an id_token for another client or without a subject`);
    }
    return claims.sub;
  }

  private async tokenRequest(grant: Record<string, string>, options: TokenRequestOptions): Promise<Response> {
    const response = await providerFetch(
      PROVIDER,
      this.settings.tokenUrl,
      { ...this.formPost({ ...grant, client_id: this.credentials.clientId, client_secret: this.credentials.clientSecret }), signal: options.signal ?? null },
      this.settings.requestTimeoutMs,
    );
    if (!response.ok) throw await classifyOAuthErrorResponse(PROVIDER, response);
    return response;
  }

  private formPost(fields: Record<string, string>): RequestInit {
    return {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams(fields).toString(),
    };
  }
}
