import { randomUUID } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { DatabasePool, DatabaseTransactionConnection } from 'slonik';
import { holdsTokenLease, markProviderCallUnanswered, releaseTokenLease, renewTokenLease, takeTokenLease } from '../db/queries/token-leases';
import { ProviderError } from '../platform/providers/provider-error';
import { FailureType } from './failure-types';

/**
 * Well above the heartbeat interval and the workflow's heartbeat timeout for token writes
 * (workflows/connection-activities.ts): a live holder always renews in time, a dead one blocks the
 * next attempt for this long at most.
 */
const LEASE_TTL_SECONDS = 15;
const HEARTBEAT_INTERVAL_MS = 2_000;

/**
 * One activity attempt's hold on a connection's token writes (design invariant 2 across attempts).
 * Temporal starts the next attempt when one times out, not when it has stopped; only the holder calls
 * the provider and stores what it answered, so two attempts never present the same refresh token or
 * authorization code. Heartbeats renew the lease; cancellation, or another attempt taking the lease
 * over, aborts the provider call through `signal`.
 */
export class TokenLease {
  private readonly taken = new AbortController();
  readonly signal: AbortSignal;
  /** An earlier attempt called the provider with this token version and its answer never arrived. */
  readonly earlierCallUnanswered: boolean;
  private callUnanswered = false;

  private constructor(
    private readonly db: DatabasePool,
    private readonly holder: string,
    readonly connectionId: string,
    readonly tokenVersion: number,
    private readonly inheritedUnanswered: number | null,
  ) {
    this.signal = AbortSignal.any([Context.current().cancellationSignal, this.taken.signal]);
    this.earlierCallUnanswered = inheritedUnanswered === tokenVersion;
  }

  /** Runs `work` holding the lease, or fails retryably at once when another live attempt holds it. */
  static async hold<T>(db: DatabasePool, connectionId: string, tokenVersion: number, work: (lease: TokenLease) => Promise<T>): Promise<T> {
    const holder = randomUUID();
    const taken = await db.transaction((transaction) => takeTokenLease(transaction, connectionId, holder, LEASE_TTL_SECONDS));
    if (!taken) throw ApplicationFailure.retryable("another attempt is writing this connection's tokens", FailureType.tokenWriteInProgress);
    const lease = new TokenLease(db, holder, connectionId, tokenVersion, taken.unansweredTokenVersion);
    const heartbeat = lease.keepAlive();
    try {
      return await work(lease);
    } finally {
      clearInterval(heartbeat);
      // When the database is away, the lease lapses on its own; the attempt's own outcome matters more.
      await releaseTokenLease(db, connectionId, holder, lease.unansweredAfterRelease()).catch(() => undefined);
    }
  }

  /** Before each provider call: from here until an answer is stored, the next holder must assume the worst. */
  async beforeProviderCall(): Promise<void> {
    if (!(await markProviderCallUnanswered(this.db, this.connectionId, this.holder, this.tokenVersion))) throw this.lost();
    this.callUnanswered = true;
  }

  /** The provider refused (an HTTP answer, not a lost one): a refusal rotates nothing. */
  noteAnswer(error: unknown): void {
    if (error instanceof ProviderError && error.details.status !== undefined) this.callUnanswered = false;
  }

  /** In the transaction that stores the provider's answer: refuses to store for a holder that lost the lease, and ends the lease with the write. */
  async settleWith(transaction: DatabaseTransactionConnection): Promise<void> {
    if (!(await holdsTokenLease(transaction, this.connectionId, this.holder))) throw this.lost();
    await releaseTokenLease(transaction, this.connectionId, this.holder, null);
  }

  /** A cancellation or a lost lease surfaces as itself, not as a provider fault. */
  rethrowIfAborted(error: unknown): void {
    if (this.signal.aborted && !(error instanceof ProviderError && error.details.status !== undefined)) throw this.signal.reason;
  }

  private keepAlive(): NodeJS.Timeout {
    const context = Context.current();
    context.heartbeat();
    return setInterval(() => {
      context.heartbeat();
      renewTokenLease(this.db, this.connectionId, this.holder, LEASE_TTL_SECONDS).then(
        (held) => held || this.taken.abort(this.lost()),
        // A database hiccup is not a lost lease; the next tick tries again before the lease lapses.
        () => undefined,
      );
    }, HEARTBEAT_INTERVAL_MS);
  }

  private unansweredAfterRelease(): number | null {
    return this.callUnanswered ? this.tokenVersion : this.inheritedUnanswered;
  }

  private lost(): ApplicationFailure {
    return ApplicationFailure.retryable("another attempt took over this connection's token writes", FailureType.tokenWriteInProgress);
  }
}
