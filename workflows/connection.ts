import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities, TokenState } from '../activities';
import { FailureType, NON_RETRYABLE_FAILURES } from '../activities/failure-types';
import {
  authorizeSignal,
  credentialsStoredSignal,
  disconnectSignal,
  freshTokenUpdate,
  invalidatedSignal,
  providerEventSignal,
  refreshNowUpdate,
  statusQuery,
  syncRequestSignal,
  type ConnectionOutcome,
  type ConnectionState,
  type ConnectionWorkflowInput,
} from './connection-messages';
import { CONNECTION_STATUS, LAST_ERROR_KIND, NEXT_REFRESH_AT, PROVIDER, USER_ID } from './search-attributes';

/** Each run stays far below Temporal's history limits; the state carried over is a few ids and times. */
const CYCLES_PER_RUN = 100;
const SLOW_RETRY_MS = 5 * 60 * 1000;
/** The update refuses to promise more validity than a fresh token of any provider has. */
const MAX_REQUESTED_VALIDITY_SECONDS = 50 * 60;
/** Provider calls (setup, renewals, syncs) start only with a token that outlives them comfortably. */
const PROVIDER_CALL_MIN_VALIDITY_MS = 5 * 60 * 1000;
const MIN_RENEWAL_DELAY_MS = 60 * 1000;
/**
 * Runs started before webhooks, syncs and search attributes existed replay without them and pick
 * them up at their next continue-as-new (see README, "Changing a workflow that has live runs").
 */
const PROVIDER_LIFECYCLE_PATCH = 'provider-lifecycle';

const codeExchange = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // Authorization codes live minutes, so retrying for longer would only fail later.
  retry: { initialInterval: '2 seconds', maximumInterval: '30 seconds', maximumAttempts: 8, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

const tokenRefresh = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // No attempt limit: a provider outage must not cost the user the connection (design invariant 4).
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

const revocation = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // Wiping our copy ends our only way to revoke, so a provider outage is waited out for a while;
  // after that the disconnect finishes anyway and records that revocation failed.
  scheduleToCloseTimeout: '2 hours',
  retry: { initialInterval: '5 seconds', maximumInterval: '5 minutes', nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

const providerSetUp = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  // A provider outage is retried here for a while, then again from the workflow's own slower timer.
  retry: { initialInterval: '5 seconds', maximumInterval: '1 minute', maximumAttempts: 6, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

const dataSync = proxyActivities<Activities>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '10 seconds', maximumInterval: '2 minutes', maximumAttempts: 4, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

const subscriptionStop = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // Subscriptions lapse upstream on their own within days, so a disconnect does not wait long for them.
  scheduleToCloseTimeout: '10 minutes',
  retry: { initialInterval: '5 seconds', maximumInterval: '1 minute', nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
});

/**
 * The life of one connection to an external provider, from its first authorization code to its
 * disconnect. It is the only writer of the connection's tokens: it refreshes them before they expire,
 * notices when the grant is gone, and on disconnect stops the provider's webhooks, revokes upstream and
 * wipes them. In between it keeps the provider's webhook subscriptions alive and syncs the provider's
 * data, on a schedule and whenever a webhook says something changed, one sync at a time.
 */
export async function connectionWorkflow(input: ConnectionWorkflowInput): Promise<ConnectionOutcome> {
  const { connectionId } = input;
  const state: ConnectionState = input.carriedState ?? { status: 'pending', tokenVersion: 0, refreshCount: 0 };
  const providerLifecycle = patched(PROVIDER_LIFECYCLE_PATCH);
  let refreshInFlight: Promise<void> | undefined;
  let refreshScope: CancellationScope | undefined;
  let tokenWriter: Promise<void> = Promise.resolve();
  let published: string | undefined;

  setHandler(authorizeSignal, ({ authorizationId }) => {
    state.pendingAuthorizationId = authorizationId;
  });
  setHandler(credentialsStoredSignal, () => {
    state.pendingActivation = true;
  });
  setHandler(disconnectSignal, (request) => {
    state.disconnectRequest ??= { ...request, receivedAt: Date.now() };
    refreshScope?.cancel();
  });
  setHandler(invalidatedSignal, ({ reason }) => {
    state.invalidation ??= { reason, receivedAt: Date.now() };
  });
  setHandler(providerEventSignal, (event) => {
    if (event.kind === 'changed' || event.kind === 'missed') requestSync({ reason: `webhook:${event.kind}`, full: false });
    else {
      state.renewalRequest = event;
      state.renewSubscriptionsAt = Date.now();
    }
  });
  setHandler(syncRequestSignal, requestSync);
  setHandler(statusQuery, () => state);
  setHandler(
    refreshNowUpdate,
    async () => {
      await refreshOnce();
      assertActive();
      return { tokenVersion: state.tokenVersion, accessTokenExpiresAt: state.accessTokenExpiresAt! };
    },
    { validator: () => assertActive() },
  );
  setHandler(
    freshTokenUpdate,
    async ({ minValiditySeconds }) => {
      const validEnough = () => state.accessTokenExpiresAt! - Date.now() >= minValiditySeconds * 1000;
      if (!validEnough()) await refreshOnce();
      assertActive();
      if (!validEnough()) throw ApplicationFailure.nonRetryable('the access token could not be renewed; see the last error', 'TokenNotRenewed');
      return { tokenVersion: state.tokenVersion, accessTokenExpiresAt: state.accessTokenExpiresAt! };
    },
    {
      // Refused updates stay out of history.
      validator: ({ minValiditySeconds }) => {
        if (!Number.isInteger(minValiditySeconds) || minValiditySeconds < 0 || minValiditySeconds > MAX_REQUESTED_VALIDITY_SECONDS) {
          throw new Error(`minValiditySeconds must be an integer from 0 to ${MAX_REQUESTED_VALIDITY_SECONDS}`);
        }
        assertActive();
      },
    },
  );

  if (providerLifecycle) {
    describeForOperators();
    // A connection that was active before provider work existed gets its setup on its first patched run.
    if (state.status === 'active' && !state.providerSetUpDone && state.setUpDueAt === undefined) state.setUpDueAt = Date.now();
  }

  for (let cycle = 1; ; cycle++) {
    publishSearchAttributes();
    if (state.disconnectRequest) return disconnect();
    if (state.status === 'disconnected') return { status: 'disconnected' };
    if (state.pendingAuthorizationId || state.pendingActivation) {
      const authorizationId = state.pendingAuthorizationId;
      await exclusively(() => (authorizationId ? authorize(authorizationId) : activateMachineAccount()));
      if (state.status === 'failed') {
        publishSearchAttributes();
        return { status: 'failed' };
      }
      continue;
    }
    if (state.invalidation) {
      if (state.status === 'active') await markNeedsReauth(state.invalidation.reason, 'the provider reported the grant revoked');
      state.invalidation = undefined;
      continue;
    }

    if (state.status === 'active' && providerLifecycle && Date.now() >= state.refreshDueAt!) {
      // A due refresh goes first: provider work can always wait a turn, an expiring token cannot.
      await refreshOnce();
    } else if (state.status === 'active' && providerWorkDue()) {
      await providerStep();
    } else if (state.status === 'active') {
      const interrupted = await condition(somethingToDo, Math.max(1, nextWakeAt() - Date.now()));
      // The timer was armed before any refresh the update made meanwhile; only a due refresh runs.
      if (!interrupted && Date.now() >= state.refreshDueAt!) await refreshOnce();
    } else {
      // pending or needs_reauth: nothing to keep alive until the user authorizes again or disconnects.
      await condition(somethingToDo);
    }

    if (cycle >= CYCLES_PER_RUN || workflowInfo().continueAsNewSuggested) {
      await condition(allHandlersFinished);
      if (!somethingToDo()) return continueAsNew<typeof connectionWorkflow>({ ...input, carriedState: state });
    }
  }

  function somethingToDo(): boolean {
    return Boolean(state.disconnectRequest || state.pendingAuthorizationId || state.pendingActivation || state.invalidation) || (state.status === 'active' && providerWorkDue());
  }

  function isDue(at: number | undefined): boolean {
    return at !== undefined && at <= Date.now();
  }

  function providerWorkDue(): boolean {
    return providerLifecycle && (isDue(state.setUpDueAt) || isDue(state.renewSubscriptionsAt) || isDue(state.nextSyncAt));
  }

  function nextWakeAt(): number {
    const dueTimes = providerLifecycle ? [state.setUpDueAt, state.renewSubscriptionsAt, state.nextSyncAt] : [];
    return Math.min(state.refreshDueAt!, ...dueTimes.filter((at): at is number => at !== undefined));
  }

  function requestSync(request: { reason: string; full: boolean }): void {
    // Requests that pile up while a sync runs become one more run; a full one wins over incremental ones.
    state.syncRequest = { reason: state.syncRequest?.reason ?? request.reason, full: Boolean(state.syncRequest?.full || request.full) };
    state.nextSyncAt = Date.now();
  }

  /** One piece of provider work per loop turn, so a disconnect or a revoked grant is seen between them. */
  async function providerStep(): Promise<void> {
    if (state.accessTokenExpiresAt! - Date.now() < PROVIDER_CALL_MIN_VALIDITY_MS) await refreshOnce();
    if (state.status !== 'active') return;
    if (state.accessTokenExpiresAt! - Date.now() < PROVIDER_CALL_MIN_VALIDITY_MS) {
      // Refreshing is failing (and retried on its own timer): provider work waits for it rather than spin.
      postponeProviderWork(state.refreshDueAt!);
      return;
    }
    if (isDue(state.setUpDueAt)) await setUpProvider();
    else if (isDue(state.renewSubscriptionsAt)) await renewSubscriptions();
    else await syncOnce();
  }

  function postponeProviderWork(until: number): void {
    if (isDue(state.setUpDueAt)) state.setUpDueAt = until;
    if (isDue(state.renewSubscriptionsAt)) state.renewSubscriptionsAt = until;
    if (isDue(state.nextSyncAt)) state.nextSyncAt = until;
  }

  async function setUpProvider(): Promise<void> {
    try {
      const setUp = await providerSetUp.setUpConnection({ connectionId });
      state.setUpDueAt = undefined;
      state.providerSetUpDone = true;
      state.providerError = undefined;
      state.renewSubscriptionsAt = renewalTime(setUp.renewSubscriptionsAt);
      state.syncIntervalSeconds = setUp.syncIntervalSeconds ?? undefined;
      // A first sync right away, so the user sees their data without waiting for the schedule.
      if (setUp.syncIntervalSeconds !== null) requestSync({ reason: 'connected', full: false });
    } catch (error) {
      state.setUpDueAt = Date.now() + SLOW_RETRY_MS;
      await providerFailure(error, (failure) => (state.providerError = failure));
    }
  }

  async function renewSubscriptions(): Promise<void> {
    const request = state.renewalRequest;
    state.renewalRequest = undefined;
    try {
      const plan = await providerSetUp.renewConnectionSubscriptions({
        connectionId,
        reason: request?.kind === 'reauthorization_required' || request?.kind === 'subscription_removed' ? request.kind : 'due',
        ...(request?.subscriptionId ? { subscriptionId: request.subscriptionId } : {}),
      });
      state.renewSubscriptionsAt = state.renewalRequest ? Date.now() : renewalTime(plan.renewAt);
      state.providerError = undefined;
    } catch (error) {
      state.renewalRequest ??= request;
      state.renewSubscriptionsAt = Date.now() + SLOW_RETRY_MS;
      await providerFailure(error, (failure) => (state.providerError = failure));
    }
  }

  async function syncOnce(): Promise<void> {
    const request = state.syncRequest ?? { reason: 'scheduled', full: false };
    state.syncRequest = undefined;
    const sync = (state.sync ??= { runCount: 0 });
    let retryAt: number | undefined;
    try {
      const summary = await dataSync.syncConnection({ connectionId, ...request });
      if (summary) {
        const { created, updated, deleted, fullResync } = summary;
        Object.assign(sync, { lastRunAt: summary.finishedAt, lastOutcome: 'succeeded', lastCounts: { created, updated, deleted, fullResync }, lastError: undefined });
        sync.runCount += 1;
      }
    } catch (error) {
      retryAt = Date.now() + SLOW_RETRY_MS;
      await providerFailure(error, (failure) => Object.assign(sync, { lastRunAt: failure.at, lastOutcome: 'failed', lastError: failure }));
    }
    const scheduled = state.syncIntervalSeconds ? Date.now() + state.syncIntervalSeconds * 1000 : undefined;
    if (state.syncRequest) state.nextSyncAt = Date.now();
    else state.nextSyncAt = retryAt !== undefined && scheduled !== undefined ? Math.min(retryAt, scheduled) : (scheduled ?? retryAt);
  }

  /** A provider that grants less than our renewal margin must not make renewals spin. */
  function renewalTime(renewAt: number | null): number | undefined {
    return renewAt === null ? undefined : Math.max(renewAt, Date.now() + MIN_RENEWAL_DELAY_MS);
  }

  /** A revoked grant or a vanished connection ends provider work; anything else is recorded and retried later. */
  async function providerFailure(error: unknown, record: (failure: { kind: string; message: string; at: number }) => void): Promise<void> {
    if (!(error instanceof ActivityFailure)) throw error;
    const failure = describeFailure(error);
    record(failure);
    log.warn('provider work failed', { connectionId, kind: failure.kind });
    if (failure.kind === FailureType.grantRevoked) await markNeedsReauth('invalid_grant', failure.message);
    else if (failure.kind === FailureType.connectionGone) state.disconnectRequest ??= { requestedBy: { type: 'system' }, receivedAt: Date.now() };
  }

  /** The human facts Temporal Web shows in the memo; set once, carried over by continue-as-new. */
  function describeForOperators(): void {
    if (workflowInfo().memo?.connectionId) return;
    upsertMemo({ connectionId, provider: input.provider, userId: input.userId, firstStartedAt: new Date(workflowInfo().startTime).toISOString() });
  }

  /** Only changes are written: every upsert is an event in the history. */
  function publishSearchAttributes(): void {
    if (!providerLifecycle) return;
    const lastErrorKind = state.lastError?.kind ?? state.providerError?.kind ?? state.sync?.lastError?.kind ?? null;
    const nextRefreshAt = state.status === 'active' && state.refreshDueAt !== undefined ? new Date(state.refreshDueAt) : null;
    const fingerprint = JSON.stringify([state.status, nextRefreshAt, lastErrorKind]);
    if (fingerprint === published) return;
    published = fingerprint;
    upsertSearchAttributes([
      { key: PROVIDER, value: input.provider },
      { key: USER_ID, value: input.userId },
      { key: CONNECTION_STATUS, value: state.status },
      { key: NEXT_REFRESH_AT, value: nextRefreshAt },
      { key: LAST_ERROR_KIND, value: lastErrorKind },
    ]);
  }

  function assertActive(): void {
    if (state.status !== 'active' || state.disconnectRequest) {
      throw ApplicationFailure.nonRetryable(`connection is ${state.disconnectRequest ? 'disconnecting' : state.status}`, 'ConnectionNotActive');
    }
  }

  function applyTokens(tokens: TokenState): void {
    const now = Date.now();
    const margin = (input.refreshPolicy.marginSeconds + Math.random() * input.refreshPolicy.jitterSeconds) * 1000;
    state.tokenVersion = tokens.tokenVersion;
    state.accessTokenExpiresAt = tokens.accessTokenExpiresAt;
    // A token that lives shorter than the margin is still given half its life, so refreshes cannot spin.
    state.refreshDueAt = Math.max(tokens.accessTokenExpiresAt - margin, now + (tokens.accessTokenExpiresAt - now) / 2);
  }

  async function authorize(authorizationId: string): Promise<void> {
    state.pendingAuthorizationId = undefined;
    await firstTokens(() => codeExchange.exchangeAuthorizationCode({ connectionId, authorizationId }));
  }

  async function activateMachineAccount(): Promise<void> {
    state.pendingActivation = false;
    await firstTokens(() => codeExchange.activateMachineAccount({ connectionId }));
  }

  /** A first authorization or a re-consent: the tokens it yields replace whatever the connection had. */
  async function firstTokens(obtain: () => Promise<TokenState>): Promise<void> {
    try {
      applyTokens(await obtain());
      state.status = 'active';
      state.lastError = undefined;
      state.invalidation = undefined;
      if (providerLifecycle) state.setUpDueAt = Date.now();
    } catch (error) {
      if (!(error instanceof ActivityFailure)) throw error;
      state.lastError = describeFailure(error);
      log.warn('authorization could not be completed', { connectionId, kind: state.lastError.kind });
      // A re-consent that fails leaves the existing grant as it was; a first one leaves nothing to keep.
      if (state.status === 'pending') {
        await bookkeeping.markConnectionFailed({ connectionId, reason: state.lastError.kind });
        state.status = 'failed';
      }
    }
  }

  /** Code exchanges and refreshes write the same token version, so they run one after the other. */
  function exclusively(work: () => Promise<void>): Promise<void> {
    const run = tokenWriter.then(work);
    tokenWriter = run.catch(() => undefined);
    return run;
  }

  /** Both the timer and the freshToken update come here, so two refreshes never run at once. */
  function refreshOnce(): Promise<void> {
    refreshInFlight ??= exclusively(refreshTokens).finally(() => {
      refreshInFlight = undefined;
    });
    return refreshInFlight;
  }

  async function refreshTokens(): Promise<void> {
    if (state.status !== 'active' || state.disconnectRequest) return;
    const scope = new CancellationScope();
    refreshScope = scope;
    try {
      applyTokens(await scope.run(() => tokenRefresh.refreshConnectionTokens({ connectionId, expectedVersion: state.tokenVersion })));
      state.refreshCount += 1;
      state.lastRefreshedAt = Date.now();
      state.lastError = undefined;
    } catch (error) {
      if (isCancellation(error)) return; // a disconnect arrived; the main loop handles it
      if (!(error instanceof ActivityFailure)) throw error;
      state.lastError = describeFailure(error);
      if (state.lastError.kind === FailureType.grantRevoked) await markNeedsReauth('invalid_grant', state.lastError.message);
      // Whatever removed the connection underneath us, finishing the disconnect leaves nothing behind.
      else if (state.lastError.kind === FailureType.connectionGone) state.disconnectRequest ??= { requestedBy: { type: 'system' }, receivedAt: Date.now() };
      // A refusal that needs an operator (our credentials, an unreadable secret): keep the grant, try again slowly.
      else state.refreshDueAt = Date.now() + SLOW_RETRY_MS;
    } finally {
      refreshScope = undefined;
      // A refresh an update ran (or its invalid_grant) reaches Temporal Web now, not when the loop next wakes.
      publishSearchAttributes();
    }
  }

  async function markNeedsReauth(reason: string, message: string): Promise<void> {
    await bookkeeping.markConnectionNeedsReauth({ connectionId, reason });
    state.status = 'needs_reauth';
    state.lastError = { kind: reason, message, at: Date.now() };
  }

  async function disconnect(): Promise<ConnectionOutcome> {
    const request = { connectionId, requestedBy: state.disconnectRequest!.requestedBy };
    state.status = 'disconnecting';
    publishSearchAttributes();
    if (providerLifecycle) {
      try {
        await subscriptionStop.stopConnectionSubscriptions({ connectionId });
      } catch (error) {
        if (!(error instanceof ActivityFailure)) throw error;
        log.warn('webhook subscriptions could not be stopped upstream; they lapse on their own', { connectionId, kind: describeFailure(error).kind });
        await bookkeeping.abandonConnectionSubscriptions({ connectionId });
      }
    }
    let outcome: Awaited<ReturnType<Activities['revokeConnectionUpstream']>>;
    let revocationError: string | undefined;
    try {
      outcome = await revocation.revokeConnectionUpstream(request);
    } catch (error) {
      if (!(error instanceof ActivityFailure)) throw error;
      outcome = 'failed';
      revocationError = describeFailure(error).message;
    }
    await bookkeeping.wipeDisconnectedConnection({ ...request, revocation: outcome, ...(revocationError ? { revocationError } : {}) });
    state.status = 'disconnected';
    publishSearchAttributes();
    await condition(allHandlersFinished);
    return { status: 'disconnected', revocation: outcome };
  }
}

function describeFailure(error: ActivityFailure): { kind: string; message: string; at: number } {
  const cause = error.cause;
  return cause instanceof ApplicationFailure
    ? { kind: cause.type ?? 'ApplicationFailure', message: cause.message, at: Date.now() }
    : { kind: cause?.name ?? 'ActivityFailure', message: cause?.message ?? error.message, at: Date.now() };
}
