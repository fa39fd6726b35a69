import { decodeJwt, errors as joseErrors } from 'jose';
import type { MicrosoftSettings, OAuthClientCredentials } from '../config';
import { classifyMicrosoftTokenError } from './microsoft-identity-errors';
import { providerFetch, ProviderError } from './provider-error';
import { readStandardTokenResponse, type ProviderTokens, type TokenRequestOptions } from './oauth-tokens';
import type { AuthorizationRequest, OAuthProviderAdapter, RevocationOutcome } from './provider';

const PROVIDER = 'Microsoft';

/** The Microsoft identity platform (v2.0 endpoints), as described in shared/protocols.md. */
export class MicrosoftCalendarAdapter implements OAuthProviderAdapter {
  readonly id = 'microsoft-calendar' as const;
  readonly kind = 'oauth' as const;
  readonly supportsRevocation = false;
  readonly revocationEndsAccountGrant = false;
  readonly rotatesRefreshTokens = true;

  constructor(
    private readonly settings: MicrosoftSettings,
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
      response_mode: 'query',
      // offline_access (in the configured scopes) is what makes Microsoft issue a refresh token.
      scope: this.settings.scopes.join(' '),
      state: request.state,
      code_challenge: request.codeChallenge,
      code_challenge_method: 'S256',
      // A person with a work and a personal account picks the one whose calendar is meant.
      prompt: 'select_account',
    }).toString();
    return url.toString();
  }

  async exchangeCode(input: { code: string; codeVerifier: string; redirectUri: string }, options: TokenRequestOptions = {}): Promise<ProviderTokens & { refreshToken: string }> {
    const tokens = await this.tokenRequest(
      { grant_type: 'authorization_code', code: input.code, code_verifier: input.codeVerifier, redirect_uri: input.redirectUri },
      options,
    );
    const { refreshToken } = tokens;
    if (!refreshToken) throw new ProviderError('protocol', `${PROVIDER} issued no refresh token: offline_access was not granted`);
    return { ...tokens, refreshToken };
  }

  /**
   * Microsoft answers every refresh with a new refresh token; the connection stores it each time,
   * and keeps the one it used until the new one has worked once.
   */
  refresh(refreshToken: string, options: TokenRequestOptions = {}): Promise<ProviderTokens> {
    return this.tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshToken }, options);
  }

  /**
   * Microsoft cannot revoke one app's grant: its only revocation, revokeSignInSessions, signs the
   * user out of every app on every device. Disconnect deletes the subscriptions and our tokens instead.
   */
  async revoke(): Promise<RevocationOutcome> {
    return 'not_supported';
  }

  private async tokenRequest(grant: Record<string, string>, options: TokenRequestOptions): Promise<ProviderTokens> {
    const response = await providerFetch(
      PROVIDER,
      this.settings.tokenUrl,
      {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({
          ...grant,
          // The v2.0 endpoint wants the scopes on refreshes too, or it may answer for a different resource.
          scope: this.settings.scopes.join(' '),
          client_id: this.credentials.clientId,
          client_secret: this.credentials.clientSecret,
        }).toString(),
        signal: options.signal ?? null,
      },
      this.settings.requestTimeoutMs,
    );
    if (!response.ok) throw await classifyMicrosoftTokenError(response);
    const idToken = ((await response.clone().json().catch(() => ({}))) as { id_token?: unknown }).id_token;
    const tokens = await readStandardTokenResponse(PROVIDER, response);
    const accountId = typeof idToken === 'string' ? accountIdOf(idToken) : undefined;
    return { ...tokens, scopes: grantedScopes(tokens), ...(accountId ? { accountId } : {}) };
  }
}

/**
 * The scopes in the names we asked for: Microsoft qualifies Graph scopes with the resource
 * (`https://graph.microsoft.com/Calendars.Read`) and never lists offline_access, whose grant is the
 * refresh token itself.
 */
function grantedScopes(tokens: ProviderTokens): string[] | undefined {
  if (!tokens.scopes) return undefined;
  const scopes = tokens.scopes.map((scope) => scope.replace(/^https:\/\/graph\.microsoft\.com\//i, ''));
  return tokens.refreshToken && !scopes.includes('offline_access') ? [...scopes, 'offline_access'] : scopes;
}

/**
 * The account behind the grant, from the ID token that comes with the `openid` scope. It arrived
 * straight from the token endpoint over TLS, so it is read without checking its signature (OpenID
 * Connect Core 3.1.3.7); it only labels the connection and grants nothing.
 */
function accountIdOf(idToken: string): string | undefined {
  try {
    const claims = decodeJwt(idToken);
    const id = claims.oid ?? claims.sub;
    return typeof id === 'string' && id.length > 0 ? id : undefined;
  } catch (error) {
    if (error instanceof joseErrors.JWTInvalid) throw new ProviderError('protocol', `${PROVIDER} sent an ID token that is not a JWT`);
    throw error;
  }
}
