import { sql, type CommonQueryMethods, type DatabaseTransactionConnection } from 'slonik';
import { z } from 'zod';

/**
 * The lease on a connection's token writes (migration 0011): held by one activity attempt at a time,
 * across its provider call, and kept alive by that attempt's heartbeats. Times are the database's, so
 * every worker agrees on when a lease has lapsed.
 */

const leaseRow = z.object({
  holder: z.string().nullable(),
  live: z.boolean(),
  unansweredTokenVersion: z.number().int().nullable(),
});

/**
 * Takes the lease unless another holder's is still live. Answers the token version of an earlier
 * provider call whose answer never arrived (or null), as it was before this call; null when not taken.
 */
export async function takeTokenLease(
  db: DatabaseTransactionConnection,
  connectionId: string,
  holder: string,
  ttlSeconds: number,
): Promise<{ unansweredTokenVersion: number | null } | null> {
  await db.query(sql.unsafe`INSERT INTO integration_token_leases (connection_id) VALUES (${connectionId}) ON CONFLICT (connection_id) DO NOTHING`);
  const lease = await db.one(sql.type(leaseRow)`
    SELECT holder, COALESCE(expires_at > now(), FALSE) AS live, unanswered_token_version AS "unansweredTokenVersion"
    FROM integration_token_leases WHERE connection_id = ${connectionId} FOR UPDATE`);
  if (lease.holder !== null && lease.holder !== holder && lease.live) return null;
  await db.query(sql.unsafe`
    UPDATE integration_token_leases SET holder = ${holder}, expires_at = now() + make_interval(secs => ${ttlSeconds})
    WHERE connection_id = ${connectionId}`);
  return { unansweredTokenVersion: lease.unansweredTokenVersion };
}

/** Extends a lease this holder still has; false once another attempt took it over. */
export async function renewTokenLease(db: CommonQueryMethods, connectionId: string, holder: string, ttlSeconds: number): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE integration_token_leases SET expires_at = now() + make_interval(secs => ${ttlSeconds})
    WHERE connection_id = ${connectionId} AND holder = ${holder}`);
  return result.rowCount === 1;
}

/** Written before the provider call: until an answer is stored, nobody knows whether the provider rotated. */
export async function markProviderCallUnanswered(db: CommonQueryMethods, connectionId: string, holder: string, tokenVersion: number): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE integration_token_leases SET unanswered_token_version = ${tokenVersion},
      unanswered_since = CASE WHEN unanswered_token_version = ${tokenVersion} THEN unanswered_since ELSE now() END
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
 * Gives the lease up. `unansweredTokenVersion` is what the next holder must know: null once an answer
 * is stored, the earlier value when the provider refused (a refusal rotates nothing), or this call's
 * token version when its answer never came.
 */
export async function releaseTokenLease(db: CommonQueryMethods, connectionId: string, holder: string, unansweredTokenVersion: number | null): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE integration_token_leases SET holder = NULL, expires_at = NULL,
      unanswered_token_version = ${unansweredTokenVersion},
      unanswered_since = CASE WHEN ${unansweredTokenVersion}::integer IS NULL THEN NULL ELSE unanswered_since END
    WHERE connection_id = ${connectionId} AND holder = ${holder}`);
}
