import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';

/**
 * The voice-device workflow's messages: one workflow per linked voice device
 * (`voice-device:<platform>:<deviceId>`). Like the connection workflow's, every message carries ids,
 * times and statuses only; codes and tokens stay in Postgres, encrypted (design invariant 1).
 */

export type VoicePlatform = 'alexa' | 'google';
export type VoiceDeviceStatus = 'linked' | 'unlinking' | 'unlinked';

/** Every way a device link ends; each is audited as the reason of VoiceDeviceUnlink. */
export type UnlinkDirection =
  | 'alexa_skill_disabled'
  | 'google_disconnect'
  | 'user'
  | 'grant_revoked'
  | 'tokens_revoked'
  | 'operator'
  | 'client_revoked'
  | 'unused'
  | 'platform_permission_revoked';

export function voiceDeviceWorkflowId(platform: VoicePlatform, deviceId: string): string {
  return `voice-device:${platform}:${deviceId}`;
}

export interface VoiceDeviceWorkflowInput {
  deviceId: string;
  platform: VoicePlatform;
  /** LWA refresh margin and jitter (TOKEN_REFRESH_MARGIN_SECONDS, TOKEN_REFRESH_JITTER_SECONDS). */
  refreshPolicy: { marginSeconds: number; jitterSeconds: number };
  /** Set only by continue-as-new: what the previous run knew. */
  carriedState?: VoiceDeviceState;
}

export interface VoiceDeviceState {
  status: VoiceDeviceStatus;
  /** When our device grant ends unless the platform uses it again (the newest refresh token's expiry). */
  linkExpiresAt?: number;
  /** Alexa: Login with Amazon tokens for the event gateway, once AcceptGrant has been exchanged. */
  lwa?: { tokenVersion: number; accessTokenExpiresAt: number; refreshDueAt: number; refreshCount: number };
  reportsSent: number;
  /** A state report (Alexa ChangeReport, Home Graph reportStateAndNotification) is wanted. */
  reportRequested?: { reason: string; at: number };
  /** A change report asked for while the pending report is a discovery, which carries no values: it follows the discovery. */
  reportAfterDiscovery?: { reason: string; at: number };
  unlinkRequest?: UnlinkSignal & { receivedAt: number };
  lastError?: { kind: string; message: string; at: number };
}

export interface UnlinkSignal {
  direction: UnlinkDirection;
  requestedBy: { type: 'user' | 'operator' | 'system' | 'platform'; id?: string };
}

export interface ReportStateSignal {
  reason: string;
}

/** How a device's workflow ended: always unlinked, from `direction` (absent when the device was gone already). */
export interface VoiceDeviceOutcome {
  status: 'unlinked';
  direction?: UnlinkDirection;
  /** Google: what Home Graph's `DELETE agentUsers/{deviceId}` came to. */
  agentUser?: 'deleted' | 'not_found' | 'deleted_before' | 'failed';
}

/** The result of an AcceptGrant: the code itself waits in voice_devices.lwa_grant_code_enc. */
export type AcceptGrantResult = { accepted: true; accessTokenExpiresAt: number } | { accepted: false; reason: string };

export const unlinkSignal = defineSignal<[UnlinkSignal]>('unlink');
export const reportStateSignal = defineSignal<[ReportStateSignal]>('reportState');
/** Exchanges the Alexa permission code stored on the device row at once (it lives minutes). */
export const acceptGrantUpdate = defineUpdate<AcceptGrantResult, []>('acceptGrant');
export const voiceDeviceStatusQuery = defineQuery<VoiceDeviceState>('status');
