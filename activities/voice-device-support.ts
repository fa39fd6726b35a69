import { ApplicationFailure, Context } from '@temporalio/activity';
import { findVoiceDevice, recordVoiceDeviceError, type VoiceDeviceRow } from '../db/queries/voice-devices';
import type { AuditEntry } from '../platform/audit';
import { ProviderError } from '../platform/providers/provider-error';
import { VoicePlatformError, type HomeGraph, type LoginWithAmazon, type VoicePlatforms } from '../platform/voice/voice-platform';
import type { CommonQueryMethods } from 'slonik';
import { providerActivityFailure } from './dependencies';
import { FailureType } from './failure-types';

/** A device the workflow may still work for; an unlinked or removed one ends the activity for good. */
export async function linkedVoiceDevice(db: CommonQueryMethods, deviceId: string): Promise<VoiceDeviceRow> {
  const device = await findVoiceDevice(db, deviceId);
  if (!device || device.status !== 'linked') throw ApplicationFailure.nonRetryable(`voice device is ${device?.status ?? 'gone'}`, FailureType.deviceUnlinked);
  return device;
}

/** Audit rows about a device name its user, its platform client and the device itself. */
export function deviceAuditEntry(device: Pick<VoiceDeviceRow, 'id' | 'userId' | 'clientId' | 'platform'>): Pick<AuditEntry, 'userId' | 'clientId' | 'provider'> {
  return { userId: device.userId, clientId: device.clientId, provider: device.platform };
}

/** Like a missing provider adapter: this worker lacks the settings; another worker (or a fixed deployment) can. */
export function requireLoginWithAmazon(voice: VoicePlatforms): LoginWithAmazon {
  if (!voice.loginWithAmazon) throw ApplicationFailure.retryable('Login with Amazon is not configured on this worker', FailureType.providerUnavailable);
  return voice.loginWithAmazon;
}

export function requireHomeGraph(voice: VoicePlatforms): HomeGraph {
  if (!voice.homeGraph) throw ApplicationFailure.retryable('Home Graph is not configured on this worker', FailureType.providerUnavailable);
  return voice.homeGraph;
}

/** The activity's cancellation, handed to platform calls so that an unlink does not wait for them. */
export function platformCallOptions(): { signal: AbortSignal } {
  return { signal: Context.current().cancellationSignal };
}

/**
 * A voice platform's refusal as an activity failure the workflow tells apart: a withdrawn permission
 * or a forgotten agent user ends the link, a refusal an operator must fix is not retried at once, and
 * 429, 5xx and network faults are retried (after the platform's Retry-After when it gave one).
 */
export function voicePlatformFailure(error: unknown): ApplicationFailure {
  if (error instanceof ProviderError) return providerActivityFailure(error);
  const message = error instanceof Error ? error.message : String(error);
  if (!(error instanceof VoicePlatformError)) return ApplicationFailure.create({ message, type: FailureType.providerUnavailable });
  switch (error.kind) {
    case 'permission_revoked':
      return ApplicationFailure.nonRetryable(message, FailureType.platformPermissionRevoked);
    case 'agent_user_not_found':
      return ApplicationFailure.nonRetryable(message, FailureType.agentUserGone);
    case 'transient': {
      const retryAfter = error.details.retryAfterSeconds;
      return ApplicationFailure.create({ message, type: FailureType.providerUnavailable, ...(retryAfter ? { nextRetryDelay: `${retryAfter} seconds` } : {}) });
    }
    default:
      return ApplicationFailure.nonRetryable(message, FailureType.providerRejected);
  }
}

/** Records the failure on the device row (for the API and operators), then hands it back to throw. */
export async function recordedVoiceFailure(db: CommonQueryMethods, deviceId: string, error: unknown): Promise<ApplicationFailure> {
  const failure = voicePlatformFailure(error);
  await recordVoiceDeviceError(db, deviceId, { kind: error instanceof VoicePlatformError || error instanceof ProviderError ? error.kind : 'unknown', message: failure.message });
  return failure;
}
