import { sql, type CommonQueryMethods, type DatabaseTransactionConnection } from 'slonik';
import { z } from 'zod';

/**
 * The lease on a connection's token writes (migration 0011): held by one activity attempt at a time,
 * across its provider call, and kept alive by that attempt's heartbeats. Times are the database's, so
 * every worker agrees on when a lease has lapsed.
 */

/**
 * A provider call whose answer never reached the database: the token version it presented, which kind
 * of call it was ('refresh', or 'exchange:<authorization id>'), when it started, and how long ago that
 * was by the database's clock when the lease was taken.
 */
export interface UnansweredCall {
  tokenVersion: number;
  call: string;
  since: number;
  ageMs: number;
}

const leaseRow = z.object({
  holder: z.string().nullable(),
  live: z.boolean(),
  unansweredTokenVersion: z.number().int().nullable(),
  unansweredCall: z.string().nullable(),
  unansweredSince: z.number().nullable(),
  unansweredAgeMs: z.number().nullable(),
});

/**
 * Takes the lease unless another holder's is still live; null when not taken. Answers the earlier
 * provider call whose answer never arrived (or null), as it was before this call, and whether the lease
 * was taken from a holder whose lease lapsed without being given back: that attempt may still be alive.
 */
export async function takeTokenLease(
  db: DatabaseTransactionConnection,
  connectionId: string,
  holder: string,
  ttlSeconds: number,
): Promise<{ unanswered: UnansweredCall | null; fromLapsedHolder: boolean } | null> {
  await db.query(sql.unsafe`INSERT INTO integration_token_leases (connection_id) VALUES (${connectionId}) ON CONFLICT (connection_id) DO NOTHING`);
  const lease = await db.one(sql.type(leaseRow)`
    SELECT holder, COALESCE(expires_at > now(), FALSE) AS live,
      unanswered_token_version AS "unansweredTokenVersion", unanswered_call AS "unansweredCall", unanswered_since AS "unansweredSince",
      (EXTRACT(EPOCH FROM now() - unanswered_since) * 1000)::float8 AS "unansweredAgeMs"
    FROM integration_token_leases WHERE connection_id = ${connectionId} FOR UPDATE`);
  if (lease.holder !== null && lease.holder !== holder && lease.live) return null;
  await db.query(sql.unsafe`
    UPDATE integration_token_leases SET holder = ${holder}, expires_at = now() + make_interval(secs => ${ttlSeconds})
    WHERE connection_id = ${connectionId}`);
  const { unansweredTokenVersion: tokenVersion, unansweredCall: call, unansweredSince: since, unansweredAgeMs: ageMs } = lease;
  const unanswered = tokenVersion !== null && call !== null && since !== null && ageMs !== null ? { tokenVersion, call, since, ageMs } : null;
  return { unanswered, fromLapsedHolder: lease.holder !== null && lease.holder !== holder };
}

/** Extends a lease this holder still has; false once another attempt took it over. */
export async function renewTokenLease(db: CommonQueryMethods, connectionId: string, holder: string, ttlSeconds: number): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE integration_token_leases SET expires_at = now() + make_interval(secs => ${ttlSeconds})
    WHERE connection_id = ${connectionId} AND holder = ${holder}`);
  return result.rowCount === 1;
}

/**
 * Written before the provider call: until an answer is stored, nobody knows whether the provider
 * rotated. The time is this call's, so the next holder knows how long the caller may still be alive.
 */
export async function markProviderCallUnanswered(
  db: CommonQueryMethods,
  connectionId: string,
  holder: string,
  unanswered: { tokenVersion: number; call: string },
): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE integration_token_leases
    SET unanswered_token_version = ${unanswered.tokenVersion}, unanswered_call = ${unanswered.call}, unanswered_since = now()
    WHERE connection_id = ${connectionId} AND holder = ${holder}`);
  return result.rowCount === 1;
}

/**
 * Locks the lease row for the write that follows in the same transaction; true when this holder still
 * has it. A holder whose lease lapsed unseen still has it: taking it over changes the holder.
 */
export async function holdsTokenLease(db: DatabaseTransactionConnection, connectionId: string, holder: string): Promise<boolean> {
  const current = await db.maybeOneFirst(sql.type(z.object({ holder: z.string().nullable() }))`
    SELECT holder FROM integration_token_leases WHERE connection_id = ${connectionId} FOR UPDATE`);
  return current === holder;
}

/**
 * Gives the lease up, leaving the unanswered call the next holder must know of: none once an answer is
 * stored, the earlier one when the provider answered (a refusal rotates nothing), or this holder's own
 * when its answer never came (then its mark, time included, stays as written).
 */
export async function releaseTokenLease(
  db: CommonQueryMethods,
  connectionId: string,
  holder: string,
  unanswered: 'own' | Pick<UnansweredCall, 'tokenVersion' | 'call' | 'since'> | null,
): Promise<void> {
  const mark =
    unanswered === 'own'
      ? sql.fragment``
      : sql.fragment`, unanswered_token_version = ${unanswered?.tokenVersion ?? null}, unanswered_call = ${unanswered?.call ?? null},
          unanswered_since = ${unanswered ? sql.timestamp(new Date(unanswered.since)) : null}`;
  await db.query(sql.unsafe`
    UPDATE integration_token_leases SET holder = NULL, expires_at = NULL ${mark}
    WHERE connection_id = ${connectionId} AND holder = ${holder}`);
}
