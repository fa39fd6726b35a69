import { ActivityFailure, ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { NON_RETRYABLE_FAILURES } from '../activities/failure-types';
import { TOKEN_WRITE_HEARTBEAT_TIMEOUT_MS } from '../platform/token-write-timeouts';
import type { ConnectionWorkflowInput } from './connection-messages';
import { BACKGROUND, USER_VISIBLE, USER_WAITING } from './task-priorities';

/**
 * The connection workflow's activities, grouped by how they are retried. Token writes heartbeat: an
 * attempt that stops heartbeating is given up within seconds, its provider call aborted, and the
 * next attempt waits for its lease (activities/token-lease.ts) instead of overlapping it.
 */

export const codeExchange = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  heartbeatTimeout: TOKEN_WRITE_HEARTBEAT_TIMEOUT_MS,
  priority: USER_WAITING,
  // Authorization codes live minutes, so retrying for longer would only fail later.
  retry: { initialInterval: '2 seconds', maximumInterval: '30 seconds', maximumAttempts: 8, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

export const machineAccountActivation = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  priority: USER_WAITING,
  retry: { initialInterval: '2 seconds', maximumInterval: '30 seconds', maximumAttempts: 8, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

const MIN_RETRY_INTERVAL_MS = 1000;
const MAX_RETRY_INTERVAL_MS = 2 * 60 * 1000;
const FIRST_RETRY_INTERVAL_MS = 5000;
const DENSE_TRIES_AFTER_EXPIRY_MS = 60 * 1000;

/**
 * While the access token is valid, tries are spaced by the validity left, so that `tries` attempts
 * still come before it expires: a backoff that doubled past the expiry would let the token lapse.
 * A minute after the expiry the dense tries stop (the workflow tries again after its slow timer);
 * a refresh of an expired token backs off to two minutes with no attempt limit, since a provider
 * outage must not cost the user the connection (design invariant 4).
 */
export function tokenRefresh(validityLeftMs: number, tries: number) {
  const beforeExpiry = validityLeftMs > 0;
  const maximumInterval = beforeExpiry ? Math.min(MAX_RETRY_INTERVAL_MS, Math.max(MIN_RETRY_INTERVAL_MS, Math.floor(validityLeftMs / tries))) : MAX_RETRY_INTERVAL_MS;
  return proxyActivities<Activities>({
    startToCloseTimeout: '1 minute',
    heartbeatTimeout: TOKEN_WRITE_HEARTBEAT_TIMEOUT_MS,
    ...(beforeExpiry ? { scheduleToCloseTimeout: validityLeftMs + DENSE_TRIES_AFTER_EXPIRY_MS } : {}),
    retry: {
      initialInterval: Math.min(FIRST_RETRY_INTERVAL_MS, maximumInterval),
      backoffCoefficient: 2,
      maximumInterval,
      nonRetryableErrorTypes: NON_RETRYABLE_FAILURES,
    },
  });
}

/** Runs started before UPSTREAM_REVOCATION_WINDOW_SECONDS existed wait out an outage as long as its default. */
const DEFAULT_REVOCATION_WINDOW_SECONDS = 2 * 60 * 60;
const REVOCATION_ATTEMPT_TIMEOUT_MS = 60 * 1000;
const REVOCATION_RETRY = { initialInterval: '5 seconds', maximumInterval: '5 minutes', nonRetryableErrorTypes: NON_RETRYABLE_FAILURES } as const;
/** The activity gives each token up once its window has passed; that last try comes within a retry interval and an attempt. */
const LAST_TRY_AFTER_WINDOW_MS = 5 * 60 * 1000 + REVOCATION_ATTEMPT_TIMEOUT_MS;

export function revocationWindowSeconds(input: ConnectionWorkflowInput): number {
  return input.revocationWindowSeconds ?? DEFAULT_REVOCATION_WINDOW_SECONDS;
}

/**
 * Wiping our copy ends our only way to revoke, so a provider outage is waited out for the window;
 * after that the disconnect finishes anyway and records that revocation failed.
 */
export function revocation(windowSeconds: number) {
  return proxyActivities<Activities>({
    startToCloseTimeout: REVOCATION_ATTEMPT_TIMEOUT_MS,
    priority: USER_VISIBLE,
    scheduleToCloseTimeout: windowSeconds * 1000,
    retry: REVOCATION_RETRY,
  });
}

/**
 * Tokens an exchange will not keep: retried as long as the window, and once more to record those it
 * gives up on. Each attempt settles a few and heartbeats, so one that hangs on a provider is noticed.
 */
export function unkeptTokenRevocation(windowSeconds: number) {
  return proxyActivities<Activities>({
    startToCloseTimeout: REVOCATION_ATTEMPT_TIMEOUT_MS,
    heartbeatTimeout: TOKEN_WRITE_HEARTBEAT_TIMEOUT_MS,
    scheduleToCloseTimeout: windowSeconds * 1000 + LAST_TRY_AFTER_WINDOW_MS,
    retry: REVOCATION_RETRY,
  });
}

const PROVIDER_SET_UP_OPTIONS = {
  startToCloseTimeout: '2 minutes',
  // A provider outage is retried here for a while, then again from the workflow's own slower timer.
  retry: { initialInterval: '5 seconds', maximumInterval: '1 minute', maximumAttempts: 6, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
} as const;

/*
 * Provider work presents the stored access token, and the workflow's loop waits for it before it can
 * refresh, so each of these takes how long the task may wait in the queue: a worker that falls behind
 * lets the task time out there (no attempt, no slot, no query) instead of starting it with a token that
 * expired meanwhile or holding up the refresh. The workflow refreshes and tries again.
 */

/** The setup after an authorization: what the user waits for before their data shows. */
export function providerSetUp(startWithinMs: number) {
  return proxyActivities<Activities>({ ...PROVIDER_SET_UP_OPTIONS, scheduleToStartTimeout: startWithinMs, priority: USER_VISIBLE });
}

/** Subscription renewals come days before the subscriptions lapse: they take their turn. */
export function subscriptionRenewal(startWithinMs: number) {
  return proxyActivities<Activities>({ ...PROVIDER_SET_UP_OPTIONS, scheduleToStartTimeout: startWithinMs, priority: BACKGROUND });
}

const DATA_SYNC_OPTIONS = {
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '10 seconds', maximumInterval: '2 minutes', maximumAttempts: 4, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
} as const;

/** Syncs on schedule or on a webhook's notice. */
export function dataSync(startWithinMs: number) {
  return proxyActivities<Activities>({ ...DATA_SYNC_OPTIONS, scheduleToStartTimeout: startWithinMs, priority: BACKGROUND });
}

/** The first sync after an authorization: the user is looking for their data. */
export function firstDataSync(startWithinMs: number) {
  return proxyActivities<Activities>({ ...DATA_SYNC_OPTIONS, scheduleToStartTimeout: startWithinMs, priority: USER_VISIBLE });
}

export const subscriptionStop = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // A user's disconnect: a reconnect is refused until it is over.
  priority: USER_VISIBLE,
  // Subscriptions lapse upstream on their own within days, so a disconnect does not wait long for them.
  scheduleToCloseTimeout: '10 minutes',
  retry: { initialInterval: '5 seconds', maximumInterval: '1 minute', nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

export const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
});

export interface FailureRecord {
  kind: string;
  message: string;
  at: number;
}

export function describeFailure(error: ActivityFailure): FailureRecord {
  const cause = error.cause;
  return cause instanceof ApplicationFailure
    ? { kind: cause.type ?? 'ApplicationFailure', message: cause.message, at: Date.now() }
    : { kind: cause?.name ?? 'ActivityFailure', message: cause?.message ?? error.message, at: Date.now() };
}
