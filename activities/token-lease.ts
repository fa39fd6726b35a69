import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { DatabasePool, DatabaseTransactionConnection } from 'slonik';
import {
  holdsTokenLease,
  markProviderCallUnanswered,
  releaseTokenLease,
  renewTokenLease,
  takeTokenLease,
  type UnansweredCall,
} from '../db/queries/token-leases';
import { isTransientDatabaseFault } from '../db/transient-faults';
import type { Config } from '../platform/config';
import { ProviderError } from '../platform/providers/provider-error';
import { FailureType } from './failure-types';

/**
 * TOKEN_LEASE_TTL_SECONDS and TOKEN_LEASE_HEARTBEAT_INTERVAL_MS. The TTL stays above the workflow's
 * heartbeat timeout for token writes (platform/token-write-timeouts.ts): Temporal gives up on a silent
 * attempt before its lease lapses, so a lease only lapses under an attempt already given up on.
 */
export type TokenLeaseSettings = Config['tokenLease'];

/** The first pause before storing again after a database fault; pauses double up to the heartbeat interval. */
const FIRST_STORE_RETRY_PAUSE_MS = 100;

/** One attempt of a token write, from its start: when it began (this process's monotonic clock) and its lease settings. */
export interface TokenWriteAttempt {
  readonly settings: TokenLeaseSettings;
  readonly startedAt: number;
}

/**
 * Heartbeats to Temporal from the call until `work` settles, whatever `work` waits for: a database
 * pool that is slow to hand out a connection must not look like a dead attempt. Token writes wrap
 * their whole activity in it, the reads before the lease included.
 */
export async function heartbeating<T>(settings: TokenLeaseSettings, work: (attempt: TokenWriteAttempt) => Promise<T>): Promise<T> {
  const startedAt = performance.now();
  const context = Context.current();
  context.heartbeat();
  const timer = setInterval(() => context.heartbeat(), settings.heartbeatIntervalMs);
  try {
    return await work({ settings, startedAt });
  } finally {
    clearInterval(timer);
  }
}

/**
 * Runs a store again after a transient database fault (the transaction rolled back, or committed unseen:
 * the store must then find its own write and answer it), while the attempt lives: until Temporal cancels
 * it (heartbeats carry the cancellation) or its start-to-close timeout is near. `retry` is 0 on the first try.
 */
export async function storingDespiteDatabaseFaults<T>(attempt: TokenWriteAttempt, store: (retry: number) => Promise<T>): Promise<T> {
  const context = Context.current();
  const deadline = attempt.startedAt + context.info.startToCloseTimeoutMs;
  for (let retry = 0, pause = FIRST_STORE_RETRY_PAUSE_MS; ; retry += 1, pause = Math.min(pause * 2, attempt.settings.heartbeatIntervalMs)) {
    try {
      return await store(retry);
    } catch (error) {
      if (!isTransientDatabaseFault(error) || performance.now() + pause >= deadline) throw error;
      await context.sleep(pause);
    }
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
  private callUnanswered = false;

  private constructor(
    private readonly db: DatabasePool,
    private readonly holder: string,
    private readonly attempt: TokenWriteAttempt,
    readonly connectionId: string,
    readonly tokenVersion: number,
    /** 'refresh', or 'exchange:<authorization id>': only a mark of this kind of call concerns this one. */
    private readonly call: string,
    private readonly inherited: { unanswered: UnansweredCall | null; fromLapsedHolder: boolean; takenAt: number },
  ) {
    this.signal = Context.current().cancellationSignal;
  }

  /** Runs `work` holding the lease, or fails retryably at once when another live attempt holds it. */
  static async hold<T>(
    db: DatabasePool,
    attempt: TokenWriteAttempt,
    write: { connectionId: string; tokenVersion: number; call: string },
    work: (lease: TokenLease) => Promise<T>,
  ): Promise<T> {
    const holder = randomUUID();
    const taken = await db.transaction((transaction) => takeTokenLease(transaction, write.connectionId, holder, attempt.settings.ttlSeconds));
    if (!taken) throw ApplicationFailure.retryable("another attempt is writing this connection's tokens", FailureType.tokenWriteInProgress);
    const lease = new TokenLease(db, holder, attempt, write.connectionId, write.tokenVersion, write.call, { ...taken, takenAt: performance.now() });
    const renewal = lease.keepAlive();
    try {
      return await work(lease);
    } finally {
      clearInterval(renewal);
      // When the database is away, the lease lapses on its own; the attempt's own outcome matters more.
      await releaseTokenLease(db, write.connectionId, holder, lease.callUnanswered ? 'own' : lease.inherited.unanswered).catch(() => undefined);
    }
  }

  /** An earlier attempt of this kind of call presented this token version and its answer never arrived. */
  get earlierCallUnanswered(): boolean {
    const { unanswered } = this.inherited;
    return unanswered?.tokenVersion === this.tokenVersion && unanswered.call === this.call;
  }

  /**
   * That earlier attempt may still be alive and about to store its answer: its lease lapsed rather than
   * being given back, and it started its call less than an attempt's start-to-close timeout and a lease
   * TTL ago. A refusal now may be of a token its call rotated away, so it is not final yet.
   */
  get earlierCallMayStillStore(): boolean {
    if (!this.earlierCallUnanswered || !this.inherited.fromLapsedHolder) return false;
    const age = this.inherited.unanswered!.ageMs + (performance.now() - this.inherited.takenAt);
    return age < Context.current().info.startToCloseTimeoutMs + this.attempt.settings.ttlSeconds * 1000;
  }

  /** Before each provider call: from here until an answer is stored, the next holder must assume the worst. */
  async beforeProviderCall(): Promise<void> {
    if (!(await markProviderCallUnanswered(this.db, this.connectionId, this.holder, { tokenVersion: this.tokenVersion, call: this.call }))) throw this.lost();
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
  }

  /** A cancellation surfaces as itself, not as a provider fault. */
  rethrowIfAborted(error: unknown): void {
    if (this.signal.aborted && !(error instanceof ProviderError && error.details.status !== undefined)) throw this.signal.reason;
  }

  /** The failure of an attempt that must wait for another one's answer. */
  inProgress(): ApplicationFailure {
    return ApplicationFailure.retryable("an earlier attempt may still store this connection's tokens", FailureType.tokenWriteInProgress);
  }

  /**
   * Heartbeats (for a caller that does not heartbeat from its start) and renews, neither waiting for
   * the other: a renewal that waits for the database must not hold back the heartbeat that tells
   * Temporal the attempt is alive. A renewal that finds the lease taken over changes nothing here: the
   * call already out runs to its answer, and no new call starts (beforeProviderCall checks the holder).
   */
  private keepAlive(): NodeJS.Timeout {
    const context = Context.current();
    return setInterval(() => {
      context.heartbeat();
      // A database hiccup is not a lost lease; the next tick tries again before the lease lapses.
      renewTokenLease(this.db, this.connectionId, this.holder, this.attempt.settings.ttlSeconds).catch(() => undefined);
    }, this.attempt.settings.heartbeatIntervalMs);
  }

  private lost(): ApplicationFailure {
    return ApplicationFailure.retryable("another attempt took over this connection's token writes", FailureType.tokenWriteInProgress);
  }
}
