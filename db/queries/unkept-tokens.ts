import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

export const unkeptTokenReason = z.enum(['insufficient_scope', 'disconnected_during_authorization', 'superseded_by_reconsent', 'store_failed']);
export type UnkeptTokenReason = z.infer<typeof unkeptTokenReason>;

const unkeptTokenRow = z.object({
  id: z.string().uuid(),
  connectionId: z.string().uuid(),
  provider: z.string(),
  providerAccountId: z.string().nullable(),
  tokenEnc: z.string(),
  reason: unkeptTokenReason,
  attempts: z.number().int(),
  createdAt: z.number(),
});
export type UnkeptTokenRow = z.infer<typeof unkeptTokenRow>;

export async function insertUnkeptToken(
  db: CommonQueryMethods,
  row: { id: string; connectionId: string; provider: string; providerAccountId: string | null; tokenEnc: string; reason: UnkeptTokenReason; createdAt: Date },
): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO unkept_provider_tokens (id, connection_id, provider, provider_account_id, token_enc, reason, created_at)
    VALUES (${row.id}, ${row.connectionId}, ${row.provider}, ${row.providerAccountId}, ${row.tokenEnc}, ${row.reason}, ${sql.timestamp(row.createdAt)})`);
}

/**
 * Claims the connection's next token waiting for a final answer to its revocation, one nobody else has
 * claimed (or whose claim lapsed), for `claimSeconds`: the least tried first, so a token that keeps
 * meeting an outage does not hold back the others; none of `excluding` (tried already). Null when none is left to claim.
 */
export function claimUnkeptToken(db: CommonQueryMethods, connectionId: string, claimSeconds: number, excluding: string[]): Promise<UnkeptTokenRow | null> {
  return db.maybeOne(sql.type(unkeptTokenRow)`
    UPDATE unkept_provider_tokens SET claimed_until = now() + make_interval(secs => ${claimSeconds})
    WHERE id = (
      SELECT id FROM unkept_provider_tokens
      WHERE connection_id = ${connectionId} AND (claimed_until IS NULL OR claimed_until <= now()) AND id <> ALL(${sql.array(excluding, 'uuid')})
      ORDER BY attempts, created_at, id
      LIMIT 1
      FOR UPDATE SKIP LOCKED)
    RETURNING id, connection_id AS "connectionId", provider, provider_account_id AS "providerAccountId", token_enc AS "tokenEnc",
      reason, attempts, created_at AS "createdAt"`);
}

/** How many of the connection's tokens still wait for a final answer, claimed or not. */
export function countUnkeptTokens(db: CommonQueryMethods, connectionId: string): Promise<number> {
  return db.oneFirst(sql.type(z.object({ count: z.number().int() }))`
    SELECT count(*)::int AS count FROM unkept_provider_tokens WHERE connection_id = ${connectionId}`);
}

/** True only for the caller that removed it, so two concurrent revocations of one token audit it once. */
export async function removeUnkeptToken(db: CommonQueryMethods, id: string): Promise<boolean> {
  const result = await db.query(sql.unsafe`DELETE FROM unkept_provider_tokens WHERE id = ${id}`);
  return result.rowCount === 1;
}

/** The try met an outage: counted, and the claim given back for the next try. */
export async function recordUnkeptTokenAttempt(db: CommonQueryMethods, id: string, error: string): Promise<void> {
  await db.query(sql.unsafe`UPDATE unkept_provider_tokens SET attempts = attempts + 1, last_error = ${error}, claimed_until = NULL WHERE id = ${id}`);
}
