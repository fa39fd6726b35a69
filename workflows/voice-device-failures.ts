import { ActivityFailure, ApplicationFailure, TimeoutFailure } from '@temporalio/workflow';
import { FailureType } from '../activities/failure-types';
import type { VoiceDeviceState } from './voice-device-messages';

export type VoiceDeviceFailure = NonNullable<VoiceDeviceState['lastError']>;

/** What an activity's failure came to, in ids and words only. */
export function failureOf(error: ActivityFailure): VoiceDeviceFailure {
  const cause = error.cause;
  return cause instanceof ApplicationFailure
    ? { kind: cause.type ?? 'ApplicationFailure', message: cause.message, at: Date.now() }
    : { kind: cause?.name ?? 'ActivityFailure', message: cause?.message ?? error.message, at: Date.now() };
}

/**
 * Why an AcceptGrant exchange that failed was not accepted. Login with Amazon out of reach, or out of
 * the exchange's time, is `lwa_unavailable` (the API answers 503: the user may try again).
 */
export function acceptGrantFailureReason(error: ActivityFailure): string {
  if (error.cause instanceof TimeoutFailure) return 'lwa_unavailable';
  const failure = failureOf(error);
  return failure.kind === FailureType.providerUnavailable ? 'lwa_unavailable' : failure.kind;
}
