import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { ServiceAccountKey } from './service-account-key';
import { ServiceAccountTokens } from './service-account-tokens';
import { fetchWithDeadline, NoAnswer, retryAfterSeconds } from './voice-fetch';
import { VoicePlatformError, type HomeGraph, type VoiceRequestOptions } from './voice-platform';

const PLATFORM = 'Home Graph';
export const HOME_GRAPH_SCOPE = 'https://www.googleapis.com/auth/homegraph';

/** Google APIs answer errors as `{ error: { code, message, status } }`. */
const googleErrorBody = z.object({ error: z.object({ message: z.string().optional(), status: z.string().optional() }) });

/** Home Graph (shared/protocols.md "Google Home"), called as our service account. */
export class HomeGraphClient implements HomeGraph {
  private readonly tokens: ServiceAccountTokens;
  private readonly baseUrl: string;
  private readonly requestTimeoutMs: number;

  constructor(key: ServiceAccountKey, settings: { tokenUrl: string; homeGraphUrl: string; requestTimeoutMs: number; now?: () => number }) {
    this.tokens = new ServiceAccountTokens(key, { tokenUrl: settings.tokenUrl, scope: HOME_GRAPH_SCOPE, requestTimeoutMs: settings.requestTimeoutMs, now: settings.now ?? Date.now });
    this.baseUrl = settings.homeGraphUrl.replace(/\/+$/, '');
    this.requestTimeoutMs = settings.requestTimeoutMs;
  }

  async requestSync(agentUserId: string, options: VoiceRequestOptions = {}): Promise<void> {
    const response = await this.call('POST', '/devices:requestSync', { agentUserId, async: true }, options);
    if (response.status === 404) throw await refusal(response, 'agent_user_not_found');
    await expectSuccess(response);
  }

  async reportStateAndNotification(agentUserId: string, requestId: string, states: Record<string, Record<string, unknown>>, options: VoiceRequestOptions = {}): Promise<void> {
    const response = await this.call('POST', '/devices:reportStateAndNotification', { requestId, agentUserId, payload: { devices: { states } } }, options);
    if (response.status === 404) throw await refusal(response, 'agent_user_not_found');
    await expectSuccess(response);
  }

  async deleteAgentUser(agentUserId: string, options: VoiceRequestOptions = {}): Promise<'deleted' | 'not_found'> {
    const query = new URLSearchParams({ requestId: randomUUID() });
    const response = await this.call('DELETE', `/agentUsers/${encodeURIComponent(agentUserId)}?${query}`, undefined, options);
    if (response.status === 404) {
      await response.body?.cancel();
      return 'not_found';
    }
    await expectSuccess(response);
    return 'deleted';
  }

  /** One call with the shared token; a 401 gets one retry with a new token, since Google may end a token early. */
  private async call(method: 'POST' | 'DELETE', path: string, body: object | undefined, options: VoiceRequestOptions): Promise<Response> {
    for (let attempt = 1; ; attempt++) {
      const accessToken = await this.tokens.accessToken();
      let response: Response;
      try {
        response = await fetchWithDeadline(
          `${this.baseUrl}${path}`,
          {
            method,
            headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}) },
            ...(body ? { body: JSON.stringify(body) } : {}),
          },
          this.requestTimeoutMs,
          options,
        );
      } catch (error) {
        if (error instanceof NoAnswer) throw new VoicePlatformError('transient', `${PLATFORM} could not be reached (${error.message})`);
        throw error;
      }
      if (response.status !== 401 || attempt > 1) return response;
      await response.body?.cancel();
      this.tokens.forget(accessToken);
    }
  }
}

async function expectSuccess(response: Response): Promise<void> {
  if (!response.ok) throw await refusal(response);
  await response.body?.cancel();
}

/** 401/403 concern our service account (key, permissions, API not enabled): an operator must act. */
async function refusal(response: Response, kindOf404?: 'agent_user_not_found'): Promise<VoicePlatformError> {
  const parsed = googleErrorBody.safeParse(await response.json().catch(() => undefined));
  const status = parsed.success ? parsed.data.error.status : undefined;
  const message = `${PLATFORM} answered ${response.status}${status ? ` ${status}` : ''}: ${(parsed.success ? parsed.data.error.message : undefined) ?? response.statusText}`;
  const retryAfter = retryAfterSeconds(response);
  const details = { status: response.status, ...(status ? { platformCode: status } : {}), ...(retryAfter === undefined ? {} : { retryAfterSeconds: retryAfter }) };
  if (response.status === 429 || response.status >= 500) return new VoicePlatformError('transient', message, details);
  if (response.status === 401 || response.status === 403) return new VoicePlatformError('invalid_client', message, details);
  if (response.status === 404 && kindOf404) return new VoicePlatformError(kindOf404, message, details);
  return new VoicePlatformError('protocol', message, details);
}
