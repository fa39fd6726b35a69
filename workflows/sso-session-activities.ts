import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { NON_RETRYABLE_FAILURES } from '../activities/failure-types';

/** How the SSO session workflow calls its activities: time limits and retries follow what is at stake. */

export const pairRecord = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  // Our own database only: the pair is read, its roles applied and its end recorded however long an outage lasts.
  retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
});

/**
 * Back-channel logout deliveries, retried with backoff for SSO_BACKCHANNEL_LOGOUT_DEADLINE_SECONDS
 * (the workflow's input, so the proxy is made per run). A 400 is the receiver's final word; past the
 * deadline the workflow ends the other session itself.
 */
export function backchannelDelivery(deadlineSeconds: number) {
  return proxyActivities<Activities>({
    startToCloseTimeout: '1 minute',
    scheduleToCloseTimeout: `${deadlineSeconds} seconds`,
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 minutes', nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
  });
}
