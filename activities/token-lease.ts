import { randomUUID } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { DatabasePool, DatabaseTransactionConnection } from 'slonik';
import { holdsTokenLease, markProviderCallUnanswered, releaseTokenLease, renewTokenLease, takeTokenLease } from '../db/queries/token-leases';
import { TOKEN_LEASE_DEFAULTS, type Config } from '../platform/config';
import { ProviderError } from '../platform/providers/provider-error';
import { FailureType } from './failure-types';

/**
 * TOKEN_LEASE_TTL_SECONDS and TOKEN_LEASE_HEARTBEAT_INTERVAL_MS. The TTL stays above the workflow's
 * heartbeat timeout for token writes (workflows/connection-activities.ts): Temporal gives up on a
 * silent attempt before its lease lapses, so a lease only lapses under an attempt already given up on.
 */
export type TokenLeaseSettings = Config['tokenLease'];

/**
 * Heartbeats to Temporal from the call until `work` settles, whatever `work` waits for: a database
 * pool that is slow to hand out a connection must not look like a dead attempt. Token writes wrap
 * their whole activity in it, the reads before the lease included.
 */
export async function heartbeating<T>(settings: TokenLeaseSettings, work: () => Promise<T>): Promise<T> {
  const context = Context.current();
  context.heartbeat();
  const timer = setInterval(() => context.heartbeat(), settings.heartbeatIntervalMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/**
 * One activity attempt's hold on a connection's token writes (design invariant 2 across attempts).
 * Temporal starts the next attempt when one times out, not when it has stopped; only the holder starts
 * a provider call, so two attempts do not present the same refresh token or authorization code while
 * both are alive. What guards the stored tokens is the compare-and-set on the token version: an attempt
 * that lost the lease while its provider call was out still stores the answer, if nobody stored first,
 * since the provider may have rotated and that answer may be the only good token there is.
 */
export class TokenLease {
  /** Aborts the provider call when Temporal cancels the attempt. */
  readonly signal: AbortSignal;
  /** An earlier attempt called the provider with this token version and its answer never arrived. */
  readonly earlierCallUnanswered: boolean;
  private callUnanswered = false;
  private takenOver = false;

  private constructor(
    private readonly db: DatabasePool,
    private readonly holder: string,
    readonly connectionId: string,
    readonly tokenVersion: number,
    private readonly inheritedUnanswered: number | null,
  ) {
    this.signal = Context.current().cancellationSignal;
    this.earlierCallUnanswered = inheritedUnanswered === tokenVersion;
  }

  /**
   * Runs `work` holding the lease, or fails retryably at once when another live attempt holds it.
   * `settings` are the activity dependencies' `tokenLease` (the exchange does not hand them in yet).
   */
  static async hold<T>(
    db: DatabasePool,
    connectionId: string,
    tokenVersion: number,
    work: (lease: TokenLease) => Promise<T>,
    settings: TokenLeaseSettings = TOKEN_LEASE_DEFAULTS,
  ): Promise<T> {
    const holder = randomUUID();
    const taken = await db.transaction((transaction) => takeTokenLease(transaction, connectionId, holder, settings.ttlSeconds));
    if (!taken) throw ApplicationFailure.retryable("another attempt is writing this connection's tokens", FailureType.tokenWriteInProgress);
    const lease = new TokenLease(db, holder, connectionId, tokenVersion, taken.unansweredTokenVersion);
    const renewal = lease.keepAlive(settings);
    try {
      return await work(lease);
    } finally {
      clearInterval(renewal);
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

  /**
   * In the transaction that stores the provider's answer, before the compare-and-set: waits for a
   * takeover in progress to commit, and ends the lease with the write when this attempt still holds it.
   * An attempt that lost it stores all the same; the version decides which answer stands.
   */
  async settleWith(transaction: DatabaseTransactionConnection): Promise<void> {
    if (await holdsTokenLease(transaction, this.connectionId, this.holder)) await releaseTokenLease(transaction, this.connectionId, this.holder, null);
    else this.takenOver = true;
  }

  /** Another attempt took the lease over (seen by a renewal or by the store): it will not see what this one obtained unless this one stores it. */
  get takenOverBeforeStoring(): boolean {
    return this.takenOver;
  }

  /** A cancellation surfaces as itself, not as a provider fault. */
  rethrowIfAborted(error: unknown): void {
    if (this.signal.aborted && !(error instanceof ProviderError && error.details.status !== undefined)) throw this.signal.reason;
  }

  /**
   * Heartbeats (for a caller that does not heartbeat from its start) and renews, neither waiting for
   * the other: a renewal that waits for the database must not hold back the heartbeat that tells
   * Temporal the attempt is alive. A renewal that finds the lease taken over changes nothing here: the
   * call already out runs to its answer, and no new call starts (beforeProviderCall checks the holder).
   */
  private keepAlive(settings: TokenLeaseSettings): NodeJS.Timeout {
    const context = Context.current();
    return setInterval(() => {
      context.heartbeat();
      // A database hiccup is not a lost lease; the next tick tries again before the lease lapses.
      renewTokenLease(this.db, this.connectionId, this.holder, settings.ttlSeconds).then(
        (held) => (this.takenOver ||= !held),
        () => undefined,
      );
    }, settings.heartbeatIntervalMs);
  }

  private unansweredAfterRelease(): number | null {
    return this.callUnanswered ? this.tokenVersion : this.inheritedUnanswered;
  }

  private lost(): ApplicationFailure {
    return ApplicationFailure.retryable("another attempt took over this connection's token writes", FailureType.tokenWriteInProgress);
  }
}
