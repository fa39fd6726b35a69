import { z } from 'zod';
import { fetchWithDeadline, NoAnswer, retryAfterSeconds } from './voice-fetch';
import { VoicePlatformError, type AlexaEventGateway, type AlexaRegion, type VoiceRequestOptions } from './voice-platform';

const PLATFORM = 'The Alexa event gateway';

const gatewayErrorBody = z.object({
  payload: z.object({ code: z.string(), description: z.string().optional() }),
});


/** Sends events (`POST /v3/events`) to the gateway of the user's region, authenticated by the user's LWA access token. */
export class AlexaEventGatewayClient implements AlexaEventGateway {
  constructor(
    private readonly gatewayUrls: Record<AlexaRegion, string>,
    private readonly requestTimeoutMs: number,
  ) {}

  async send(region: AlexaRegion, lwaAccessToken: string, event: Record<string, unknown>, options: VoiceRequestOptions = {}): Promise<void> {
    let response: Response;
    try {
      response = await fetchWithDeadline(
        `${this.gatewayUrls[region].replace(/\/+$/, '')}/v3/events`,
        { method: 'POST', headers: { authorization: `Bearer ${lwaAccessToken}`, 'content-type': 'application/json' }, body: JSON.stringify(event) },
        this.requestTimeoutMs,
        options,
      );
    } catch (error) {
      if (error instanceof NoAnswer) throw new VoicePlatformError('transient', `${PLATFORM} (${region}) could not be reached (${error.message})`);
      throw error;
    }
    if (response.status === 202 || response.status === 200) {
      await response.body?.cancel();
      return;
    }
    throw await refusal(region, response);
  }
}

async function refusal(region: AlexaRegion, response: Response): Promise<VoicePlatformError> {
  const parsed = gatewayErrorBody.safeParse(await response.json().catch(() => undefined));
  const code = parsed.success ? parsed.data.payload.code : undefined;
  const description = parsed.success ? (parsed.data.payload.description ?? '') : response.statusText;
  const message = `${PLATFORM} (${region}) answered ${response.status}${code ? ` ${code}` : ''}: ${description}`;
  const retryAfter = retryAfterSeconds(response);
  const details = { status: response.status, ...(code ? { platformCode: code } : {}), ...(retryAfter === undefined ? {} : { retryAfterSeconds: retryAfter }) };
  if (response.status === 429 || response.status >= 500) return new VoicePlatformError('transient', message, details);
  if (response.status === 401 && code === 'INVALID_ACCESS_TOKEN_EXCEPTION') return new VoicePlatformError('access_token_rejected', message, details);
  // Only a disabled skill ends the link: the gateway of another region refuses a good token with INSUFFICIENT_PERMISSION_EXCEPTION.
  if (response.status === 403 && code === 'SKILL_DISABLED_EXCEPTION') return new VoicePlatformError('permission_revoked', message, details);
  if (response.status === 403 && code === 'INSUFFICIENT_PERMISSION_EXCEPTION') return new VoicePlatformError('insufficient_permission', message, details);
  return new VoicePlatformError('protocol', message, details);
}
