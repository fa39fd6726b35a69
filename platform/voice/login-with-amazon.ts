import type { OAuthClientCredentials } from '../config';
import { readStandardTokenResponse, type ProviderTokens } from '../providers/oauth-tokens';
import { classifyOAuthErrorResponse, ProviderError } from '../providers/provider-error';
import { fetchWithDeadline, NoAnswer } from './voice-fetch';
import type { LoginWithAmazon, VoiceRequestOptions } from './voice-platform';

const PROVIDER = 'Login with Amazon';

/**
 * Login with Amazon as the skill's client (shared/protocols.md "Amazon Alexa"): the AcceptGrant code is
 * exchanged for the user's Amazon tokens, which are refreshed hourly. An `invalid_grant` means the user's
 * permission is gone; `invalid_client` means our LWA credentials are wrong.
 */
export class LoginWithAmazonClient implements LoginWithAmazon {
  constructor(
    private readonly tokenUrl: string,
    private readonly credentials: OAuthClientCredentials,
    private readonly requestTimeoutMs: number,
  ) {}

  async exchangeCode(code: string, options: VoiceRequestOptions = {}): Promise<ProviderTokens> {
    return this.tokenRequest({ grant_type: 'authorization_code', code }, options);
  }

  async refresh(refreshToken: string, options: VoiceRequestOptions = {}): Promise<ProviderTokens> {
    return this.tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshToken }, options);
  }

  private async tokenRequest(grant: Record<string, string>, options: VoiceRequestOptions): Promise<ProviderTokens> {
    const form = new URLSearchParams({ ...grant, client_id: this.credentials.clientId, client_secret: this.credentials.clientSecret });
    let response: Response;
    try {
      response = await fetchWithDeadline(
        this.tokenUrl,
        { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }, body: form.toString() },
        this.requestTimeoutMs,
        options,
      );
    } catch (error) {
      if (error instanceof NoAnswer) throw new ProviderError('transient', `${PROVIDER} could not be reached (${error.message})`);
      throw error;
    }
    if (!response.ok) throw await classifyOAuthErrorResponse(PROVIDER, response);
    return readStandardTokenResponse(PROVIDER, response);
  }
}
