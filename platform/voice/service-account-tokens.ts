import { SignJWT } from 'jose';
import { readStandardTokenResponse } from '../providers/oauth-tokens';
import { classifyOAuthErrorResponse, ProviderError } from '../providers/provider-error';
import type { ServiceAccountKey } from './service-account-key';
import { fetchWithDeadline, NoAnswer } from './voice-fetch';
import { VoicePlatformError } from './voice-platform';

const PLATFORM = "Google's token endpoint";
const ASSERTION_LIFETIME_SECONDS = 3600;
const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** A token is renewed this long before it expires (at most half its life), so no call carries one about to die. */
const RENEWAL_MARGIN_SECONDS = 300;

/**
 * Access tokens of a Google service account (OAuth 2.0 JWT bearer grant, RFC 7523): a JWT signed with
 * the account's key is exchanged at the token endpoint. One token is cached and shared until shortly
 * before it expires, with at most one exchange in flight.
 */
export class ServiceAccountTokens {
  private cached: { accessToken: string; renewAt: number } | undefined;
  private exchange: Promise<string> | undefined;

  constructor(
    private readonly key: ServiceAccountKey,
    private readonly settings: { tokenUrl: string; scope: string; requestTimeoutMs: number; now: () => number },
  ) {}

  async accessToken(): Promise<string> {
    if (this.cached && this.settings.now() < this.cached.renewAt) return this.cached.accessToken;
    this.exchange ??= this.exchangeAssertion().finally(() => {
      this.exchange = undefined;
    });
    return this.exchange;
  }

  /** The API refused the token (revoked early, or our clock was off): the next call gets a new one. */
  forget(accessToken: string): void {
    if (this.cached?.accessToken === accessToken) this.cached = undefined;
  }

  private async exchangeAssertion(): Promise<string> {
    const issuedAt = Math.floor(this.settings.now() / 1000);
    const assertion = await new SignJWT({ scope: this.settings.scope })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: this.key.privateKeyId })
      .setIssuer(this.key.clientEmail)
      .setSubject(this.key.clientEmail)
      .setAudience(this.settings.tokenUrl)
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + ASSERTION_LIFETIME_SECONDS)
      .sign(this.key.privateKey);
    let response: Response;
    try {
      response = await fetchWithDeadline(
        this.settings.tokenUrl,
        {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: new URLSearchParams({ grant_type: JWT_BEARER_GRANT, assertion }).toString(),
        },
        this.settings.requestTimeoutMs,
      );
    } catch (error) {
      if (error instanceof NoAnswer) throw new VoicePlatformError('transient', `${PLATFORM} could not be reached (${error.message})`);
      throw error;
    }
    try {
      if (!response.ok) throw await classifyOAuthErrorResponse(PLATFORM, response);
      const tokens = await readStandardTokenResponse(PLATFORM, response);
      const margin = Math.min(RENEWAL_MARGIN_SECONDS, tokens.expiresInSeconds / 2);
      this.cached = { accessToken: tokens.accessToken, renewAt: issuedAt * 1000 + (tokens.expiresInSeconds - margin) * 1000 };
      return tokens.accessToken;
    } catch (error) {
      throw error instanceof ProviderError ? asVoicePlatformError(error) : error;
    }
  }
}

/** For the service account, a refused grant means our key is wrong, deleted or disabled: an operator must act. */
function asVoicePlatformError(error: ProviderError): VoicePlatformError {
  const details = { ...(error.details.status === undefined ? {} : { status: error.details.status }), ...(error.details.providerCode ? { platformCode: error.details.providerCode } : {}) };
  const kind = error.kind === 'invalid_grant' || error.kind === 'invalid_client' ? 'invalid_client' : error.kind;
  return new VoicePlatformError(kind, error.message, details);
}
