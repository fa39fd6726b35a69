import type { ProviderTokens } from '../providers/oauth-tokens';

/**
 * What the voice-device workflow's activities need from the voice platforms' own APIs: Login with
 * Amazon and the Alexa event gateway (for Alexa), Home Graph with a service account (for Google).
 * Implementations live beside this file; platform/voice/registry.ts builds them from configuration.
 */

export type AlexaRegion = 'NA' | 'EU' | 'FE';

/** Every call takes the caller's cancellation signal: a cancelled activity stops waiting for the platform at once. */
export interface VoiceRequestOptions {
  signal?: AbortSignal;
}

/** Login with Amazon, as the skill's client: AcceptGrant codes and refreshes. Failures are ProviderErrors (provider-error.ts). */
export interface LoginWithAmazon {
  exchangeCode(code: string, options?: VoiceRequestOptions): Promise<ProviderTokens>;
  refresh(refreshToken: string, options?: VoiceRequestOptions): Promise<ProviderTokens>;
}

/**
 * Why a voice platform's API refused:
 * - `access_token_rejected`: the gateway's 401 INVALID_ACCESS_TOKEN_EXCEPTION: refresh once and retry;
 * - `permission_revoked`: 403 SKILL_DISABLED_EXCEPTION: the link is gone;
 * - `insufficient_permission`: 403 INSUFFICIENT_PERMISSION_EXCEPTION: the token is not good for this gateway (a
 *   gateway of the wrong region answers it too), so the event is not delivered, but the link is not gone;
 * - `agent_user_not_found`: Home Graph's 404 for an agent user that is not linked (any more);
 * - `invalid_client`: our own credentials (service account, LWA client) are wrong: an operator must act;
 * - `transient`: 429, 5xx, timeouts and network faults: back off and retry;
 * - `protocol`: any other refusal, or an answer we cannot read.
 */
export type VoicePlatformErrorKind =
  | 'access_token_rejected'
  | 'permission_revoked'
  | 'insufficient_permission'
  | 'agent_user_not_found'
  | 'invalid_client'
  | 'transient'
  | 'protocol';

export class VoicePlatformError extends Error {
  override name = 'VoicePlatformError';

  constructor(
    readonly kind: VoicePlatformErrorKind,
    message: string,
    readonly details: { status?: number; platformCode?: string; retryAfterSeconds?: number } = {},
  ) {
    super(message);
  }
}

/** The Alexa event gateway (`POST /v3/events`) of the user's region. */
export interface AlexaEventGateway {
  send(region: AlexaRegion, lwaAccessToken: string, event: Record<string, unknown>, options?: VoiceRequestOptions): Promise<void>;
}

/** Home Graph, authenticated as our service account. */
export interface HomeGraph {
  requestSync(agentUserId: string, options?: VoiceRequestOptions): Promise<void>;
  reportStateAndNotification(agentUserId: string, requestId: string, states: Record<string, Record<string, unknown>>, options?: VoiceRequestOptions): Promise<void>;
  /** Ends Home Graph's record of the agent user; 'not_found' when it had none (already unlinked). */
  deleteAgentUser(agentUserId: string, options?: VoiceRequestOptions): Promise<'deleted' | 'not_found'>;
}

/** Each is absent when its configuration is missing; activities then fail retryably ("not configured on this worker"). */
export interface VoicePlatforms {
  loginWithAmazon: LoginWithAmazon | undefined;
  alexaEventGateway: AlexaEventGateway;
  homeGraph: HomeGraph | undefined;
}
