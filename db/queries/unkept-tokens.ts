import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

export const unkeptTokenReason = z.enum(['insufficient_scope', 'disconnected_during_authorization', 'superseded_by_reconsent']);
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

/** The connection's tokens still waiting for a final answer to their revocation, oldest first. */
export function listUnkeptTokens(db: CommonQueryMethods, connectionId: string): Promise<readonly UnkeptTokenRow[]> {
  return db.any(sql.type(unkeptTokenRow)`
    SELECT id, connection_id AS "connectionId", provider, provider_account_id AS "providerAccountId", token_enc AS "tokenEnc",
           reason, attempts, created_at AS "createdAt"
    FROM unkept_provider_tokens WHERE connection_id = ${connectionId}
    ORDER BY created_at, id`);
}

/** True only for the caller that removed it, so two concurrent revocations of one token audit it once. */
export async function removeUnkeptToken(db: CommonQueryMethods, id: string): Promise<boolean> {
  const result = await db.query(sql.unsafe`DELETE FROM unkept_provider_tokens WHERE id = ${id}`);
  return result.rowCount === 1;
}

export async function recordUnkeptTokenAttempt(db: CommonQueryMethods, id: string, error: string): Promise<void> {
  await db.query(sql.unsafe`UPDATE unkept_provider_tokens SET attempts = attempts + 1, last_error = ${error} WHERE id = ${id}`);
}
