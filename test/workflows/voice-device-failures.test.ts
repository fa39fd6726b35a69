import { describe, expect, it } from 'vitest';
import { ActivityFailure, ApplicationFailure, RetryState, TimeoutFailure, TimeoutType } from '@temporalio/common';
import { FailureType } from '../../activities/failure-types';
import { acceptGrantFailureReason } from '../../workflows/voice-device-failures';

const exchangeFailure = (cause: Error, retryState: RetryState = RetryState.MAXIMUM_ATTEMPTS_REACHED) =>
  new ActivityFailure('Activity task failed', 'exchangeAlexaGrant', '1', retryState, 'worker', cause);

describe('voice-device workflow: why an AcceptGrant exchange failed', () => {
  it('answers lwa_unavailable when Login with Amazon could not be reached, or the exchange ran out of its time', () => {
    expect(acceptGrantFailureReason(exchangeFailure(ApplicationFailure.create({ message: 'LWA 503', type: FailureType.providerUnavailable })))).toBe('lwa_unavailable');
    for (const timeoutType of [TimeoutType.SCHEDULE_TO_CLOSE, TimeoutType.START_TO_CLOSE]) {
      expect(acceptGrantFailureReason(exchangeFailure(new TimeoutFailure('activity timed out', undefined, timeoutType), RetryState.TIMEOUT))).toBe('lwa_unavailable');
    }
  });

  it('names a refusal that will not change by its own kind', () => {
    expect(acceptGrantFailureReason(exchangeFailure(ApplicationFailure.nonRetryable('bad client', FailureType.providerRejected), RetryState.NON_RETRYABLE_FAILURE))).toBe(
      FailureType.providerRejected,
    );
  });
});
