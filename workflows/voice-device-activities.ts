import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { NON_RETRYABLE_FAILURES } from '../activities/failure-types';
import { USER_WAITING } from './task-priorities';

/** How the voice-device workflow calls each kind of activity: time limits and retries follow what is at stake. */

export const grantExchange = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  // The AcceptGrant code lives minutes and Alexa waits for the answer: a few quick tries, then a refusal.
  scheduleToCloseTimeout: '2 minutes',
  priority: USER_WAITING,
  retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: 4, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

export const lwaRefresh = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // No attempt limit: an Amazon outage must not cost the user the link (design invariant 4).
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

export const reporting = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // 429 and 5xx are backed off for a while; a report that is an hour late is dropped, the next one is current.
  scheduleToCloseTimeout: '1 hour',
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes', nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

export const linkRecord = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
});

export const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  // Our own database only: an unlink keeps trying until every token is revoked.
  retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
});

export const agentUserDeletion = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // Our tokens are revoked already; Home Graph's outage is waited out for a day, then the failure is recorded.
  scheduleToCloseTimeout: '1 day',
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '30 minutes', nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});
