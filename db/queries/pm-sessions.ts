import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const endedSession = z.object({ id: z.string(), userId: z.string() });
export type EndedPmSession = z.infer<typeof endedSession>;

/**
 * Ends the live PM sessions named by a session id, a user id, or both (the session, only when it is
 * that user's): what a logout token's `sid` and `sub` name (Back-Channel Logout 1.0 section 2.7). A
 * session already revoked or expired is left as it is. Pass at least one of the two ids.
 */
export function endPmSessions(db: CommonQueryMethods, target: { sessionId?: string; userId?: string }, reason: string): Promise<readonly EndedPmSession[]> {
  if (target.sessionId === undefined && target.userId === undefined) throw new Error('endPmSessions needs a session id, a user id, or both');
  const conditions = [
    sql.fragment`revoked_at IS NULL AND expires_at > now()`,
    ...(target.sessionId === undefined ? [] : [sql.fragment`id = ${target.sessionId}`]),
    ...(target.userId === undefined ? [] : [sql.fragment`user_id = ${target.userId}`]),
  ];
  return db.any(sql.type(endedSession)`
    UPDATE user_sessions SET revoked_at = now(), ended_reason = ${reason}
    WHERE ${sql.join(conditions, sql.fragment` AND `)}
    RETURNING id, user_id AS "userId"`);
}

/** Whether the PM session is this user's and has not ended (revoked or expired). */
export async function isLivePmSession(db: CommonQueryMethods, sessionId: string, userId: string): Promise<boolean> {
  const live = await db.maybeOneFirst(sql.type(z.object({ live: z.boolean() }))`
    SELECT true AS live FROM user_sessions WHERE id = ${sessionId} AND user_id = ${userId} AND revoked_at IS NULL AND expires_at > now()`);
  return live !== null;
}
