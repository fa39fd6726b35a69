import { TimeoutType } from '@temporalio/common';
import { ActivityFailure, log, patched, TimeoutFailure } from '@temporalio/workflow';
import { FailureType } from '../activities/failure-types';
import { MIN_ACCESS_TOKEN_VALIDITY_MS } from '../platform/access-token-validity';
import { dataSync, describeFailure, firstDataSync, providerSetUp, subscriptionRenewal, type FailureRecord } from './connection-activities';
import type { SyncRequestSignal } from './connection-messages';
import { SLOW_RETRY_MS, type ConnectionContext, type ConnectionTokens } from './connection-tokens';

/** Provider calls (setup, renewals, syncs) start only with a token that outlives them comfortably. */
const PROVIDER_CALL_MIN_VALIDITY_MS = 5 * 60 * 1000;
/**
 * A token shorter-lived than PROVIDER_CALL_MIN_VALIDITY_MS is fresh enough for provider work until its
 * refresh margin (runs from before refreshed it before every step).
 */
const SHORT_LIVED_TOKEN_PATCH = 'provider-work-validity-by-refresh-margin';
const MIN_RENEWAL_DELAY_MS = 60 * 1000;
/** Temporal needs a positive queue timeout; step() runs only while the refresh is not yet due. */
const MIN_QUEUE_WAIT_MS = 1000;
/** The sync the setup asks for: the user is looking for their data. */
const FIRST_SYNC_REASON = 'connected';

/**
 * What the connection does with the provider besides tokens: the setup after each authorization
 * (listing mapping, webhook subscriptions), renewing subscriptions before they lapse, and syncing the
 * provider's data on a schedule and whenever a webhook says something changed, one sync at a time.
 */
export class ProviderWork {
  constructor(
    private readonly connection: ConnectionContext,
    private readonly tokens: ConnectionTokens,
  ) {}

  private get state() {
    return this.connection.state;
  }

  private get connectionId(): string {
    return this.connection.input.connectionId;
  }

  due(): boolean {
    const { state } = this;
    return this.connection.providerLifecycle && (isDue(state.setUpDueAt) || isDue(state.renewSubscriptionsAt) || isDue(state.nextSyncAt));
  }

  /** The earliest of the refresh and the provider work that is planned. */
  nextWakeAt(): number {
    const { state } = this;
    const dueTimes = this.connection.providerLifecycle ? [state.setUpDueAt, state.renewSubscriptionsAt, state.nextSyncAt] : [];
    return Math.min(state.refreshDueAt!, ...dueTimes.filter((at): at is number => at !== undefined));
  }

  requestSync(request: SyncRequestSignal): void {
    const { state } = this;
    // Requests that pile up while a sync runs become one more run; a full one wins over incremental ones.
    state.syncRequest = { reason: state.syncRequest?.reason ?? request.reason, full: Boolean(state.syncRequest?.full || request.full) };
    state.nextSyncAt = Date.now();
  }

  /** One piece of provider work per loop turn, so a disconnect or a revoked grant is seen between them. */
  async step(): Promise<void> {
    const { state } = this;
    if (this.tokenTooShortLived()) await this.tokens.refreshOnce();
    if (state.status !== 'active') return;
    if (this.tokenTooShortLived()) {
      // Refreshing is failing (and retried on its own timer): provider work waits for it rather than spin.
      this.postpone(state.refreshDueAt!);
      return;
    }
    if (isDue(state.setUpDueAt)) await this.setUp();
    else if (isDue(state.renewSubscriptionsAt)) await this.renewSubscriptions();
    else await this.syncOnce();
  }

  /**
   * A provider call needs a token that outlives it comfortably; a token that lives shorter than that
   * altogether is fresh enough until its refresh margin, or every step would refresh it again. The
   * margin is the one planned when the token came: a failed refresh moves refreshDueAt, maybe past the
   * expiry, and must not make an expired token look fresh.
   */
  private tokenTooShortLived(): boolean {
    const { accessTokenExpiresAt, refreshDueAt, refreshMarginMs } = this.state;
    const validityLeft = accessTokenExpiresAt! - Date.now();
    if (!patched(SHORT_LIVED_TOKEN_PATCH)) return validityLeft < PROVIDER_CALL_MIN_VALIDITY_MS;
    const margin = refreshMarginMs ?? accessTokenExpiresAt! - refreshDueAt!;
    // However short-lived the provider's tokens, one below the floor the activities enforce is refreshed first.
    return validityLeft < Math.max(MIN_ACCESS_TOKEN_VALIDITY_MS, Math.min(PROVIDER_CALL_MIN_VALIDITY_MS, margin));
  }

  /**
   * How long a provider call may wait in the task queue: until the connection's refresh is due, which
   * only this loop can run, and never so long that the token it starts with is refused.
   */
  private startWithinMs(): number {
    const { accessTokenExpiresAt, refreshDueAt } = this.state;
    return Math.max(MIN_QUEUE_WAIT_MS, Math.min(accessTokenExpiresAt! - MIN_ACCESS_TOKEN_VALIDITY_MS, refreshDueAt!) - Date.now());
  }

  private postpone(until: number): void {
    const { state } = this;
    if (isDue(state.setUpDueAt)) state.setUpDueAt = until;
    if (isDue(state.renewSubscriptionsAt)) state.renewSubscriptionsAt = until;
    if (isDue(state.nextSyncAt)) state.nextSyncAt = until;
  }

  private async setUp(): Promise<void> {
    const { state } = this;
    try {
      const setUp = await providerSetUp(this.startWithinMs()).setUpConnection({ connectionId: this.connectionId });
      state.setUpDueAt = undefined;
      state.providerSetUpDone = true;
      state.providerError = undefined;
      state.renewSubscriptionsAt = renewalTime(setUp.renewSubscriptionsAt);
      state.syncIntervalSeconds = setUp.syncIntervalSeconds ?? undefined;
      // A first sync right away, so the user sees their data without waiting for the schedule.
      if (setUp.syncIntervalSeconds !== null) this.requestSync({ reason: FIRST_SYNC_REASON, full: false });
    } catch (error) {
      state.setUpDueAt = retryTime(error);
      if (!this.waitedTooLong(error)) await this.failure(error, (failure) => (state.providerError = failure));
    }
  }

  private async renewSubscriptions(): Promise<void> {
    const { state } = this;
    const request = state.renewalRequest;
    state.renewalRequest = undefined;
    try {
      const plan = await subscriptionRenewal(this.startWithinMs()).renewConnectionSubscriptions({
        connectionId: this.connectionId,
        reason: request?.kind === 'reauthorization_required' || request?.kind === 'subscription_removed' ? request.kind : 'due',
        ...(request?.subscriptionId ? { subscriptionId: request.subscriptionId } : {}),
      });
      state.renewSubscriptionsAt = state.renewalRequest ? Date.now() : renewalTime(plan.renewAt);
      state.providerError = undefined;
    } catch (error) {
      state.renewalRequest ??= request;
      state.renewSubscriptionsAt = retryTime(error);
      if (!this.waitedTooLong(error)) await this.failure(error, (failure) => (state.providerError = failure));
    }
  }

  private async syncOnce(): Promise<void> {
    const { state } = this;
    const request = state.syncRequest ?? { reason: 'scheduled', full: false };
    state.syncRequest = undefined;
    const sync = (state.sync ??= { runCount: 0 });
    let retryAt: number | undefined;
    try {
      const syncs = request.reason === FIRST_SYNC_REASON ? firstDataSync : dataSync;
      const summary = await syncs(this.startWithinMs()).syncConnection({ connectionId: this.connectionId, ...request });
      if (summary) {
        const { created, updated, deleted, fullResync } = summary;
        Object.assign(sync, { lastRunAt: summary.finishedAt, lastOutcome: 'succeeded', lastCounts: { created, updated, deleted, fullResync }, lastError: undefined });
        sync.runCount += 1;
      }
    } catch (error) {
      retryAt = retryTime(error);
      // The sync never ran: the request (a user's first sync, a full one) waits for its next turn as it was.
      if (this.waitedTooLong(error)) this.requestSync(request);
      else await this.failure(error, (failure) => Object.assign(sync, { lastRunAt: failure.at, lastOutcome: 'failed', lastError: failure }));
    }
    const scheduled = state.syncIntervalSeconds ? Date.now() + state.syncIntervalSeconds * 1000 : undefined;
    if (state.syncRequest) state.nextSyncAt = Date.now();
    else state.nextSyncAt = retryAt !== undefined && scheduled !== undefined ? Math.min(retryAt, scheduled) : (scheduled ?? retryAt);
  }

  /**
   * A task that waited in the queue until the refresh came due never started: nothing failed, the worker
   * is behind. It goes again at once, after the refresh the loop runs first.
   */
  private waitedTooLong(error: unknown): boolean {
    const timedOut = timedOutInQueue(error);
    if (timedOut) log.info('provider work waited in the task queue until the refresh came due; it goes again after it', { connectionId: this.connectionId });
    return timedOut;
  }

  /** A revoked grant or a vanished connection ends provider work; anything else is recorded and retried later. */
  private async failure(error: unknown, record: (failure: FailureRecord) => void): Promise<void> {
    if (!(error instanceof ActivityFailure)) throw error;
    const failure = describeFailure(error);
    record(failure);
    log.warn('provider work failed', { connectionId: this.connectionId, kind: failure.kind });
    if (failure.kind === FailureType.grantRevoked) await this.tokens.markNeedsReauth('invalid_grant', failure.message);
    else if (failure.kind === FailureType.connectionGone) this.state.disconnectRequest ??= { requestedBy: { type: 'system' }, receivedAt: Date.now() };
  }
}

function isDue(at: number | undefined): boolean {
  return at !== undefined && at <= Date.now();
}

/** A provider that grants less than our renewal margin must not make renewals spin. */
function renewalTime(renewAt: number | null): number | undefined {
  return renewAt === null ? undefined : Math.max(renewAt, Date.now() + MIN_RENEWAL_DELAY_MS);
}

/**
 * Work that found the token expired, or waited in the queue until the refresh came due, goes again right
 * away: the loop refreshes first, as the refresh is due by then. Anything else waits a while. Histories
 * from before these failures never took this path.
 */
function retryTime(error: unknown): number {
  const refreshFirst = timedOutInQueue(error) || (error instanceof ActivityFailure && describeFailure(error).kind === FailureType.accessTokenExpired);
  return Date.now() + (refreshFirst ? 0 : SLOW_RETRY_MS);
}

function timedOutInQueue(error: unknown): boolean {
  return error instanceof ActivityFailure && error.cause instanceof TimeoutFailure && error.cause.timeoutType === TimeoutType.SCHEDULE_TO_START;
}
