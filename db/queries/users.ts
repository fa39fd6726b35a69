import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const userRow = z.object({ id: z.string().uuid(), email: z.string(), displayName: z.string() });
export type UserRow = z.infer<typeof userRow>;

const USER_COLUMNS = sql.fragment`id, email::text AS email, display_name AS "displayName"`;

export function insertUser(db: CommonQueryMethods, user: { email: string; displayName: string; passwordHash: string; roles?: readonly string[] }): Promise<UserRow> {
  return db.one(sql.type(userRow)`
    INSERT INTO users (email, display_name, password_hash, roles)
    VALUES (${user.email}, ${user.displayName}, ${user.passwordHash}, ${sql.array([...(user.roles ?? [])], 'text')})
    RETURNING ${USER_COLUMNS}`);
}

/** The user's password hash, and whether an operator disabled the account (a disabled user cannot sign in). */
export function findUserCredentials(db: CommonQueryMethods, email: string) {
  return db.maybeOne(sql.type(userRow.extend({ passwordHash: z.string(), disabled: z.boolean() }))`
    SELECT ${USER_COLUMNS}, password_hash AS "passwordHash", disabled_at IS NOT NULL AS disabled FROM users WHERE email = ${email}`);
}

/** A live PM session: its id is the `sid` of OpenID Connect and SSO tokens, its creation the `auth_time`. */
export interface PmSession {
  id: string;
  authTime: Date;
}

const liveSessionRow = userRow.extend({ sessionId: z.string(), authTime: z.number() });

export async function insertSession(db: CommonQueryMethods, session: { userId: string; tokenHash: string; expiresAt: Date }): Promise<PmSession> {
  const row = await db.one(sql.type(z.object({ id: z.string(), authTime: z.number() }))`
    INSERT INTO user_sessions (user_id, token_hash, expires_at)
    VALUES (${session.userId}, ${session.tokenHash}, ${sql.timestamp(session.expiresAt)})
    RETURNING id, created_at AS "authTime"`);
  return { id: row.id, authTime: new Date(row.authTime) };
}

/**
 * How stale last_seen_at (of PM and portal sessions) may grow before a request writes it again: idle
 * expiry needs minutes, not every request.
 */
export const LAST_SEEN_PRECISION_SECONDS = 60;

/**
 * The user and session of a session token: not revoked, not expired, used within `idleSeconds`, and
 * its user not disabled. Marks the session as used (at most once a minute).
 */
export async function findLiveSession(db: CommonQueryMethods, tokenHash: string, idleSeconds: number): Promise<{ user: UserRow; session: PmSession } | null> {
  const row = await db.maybeOne(sql.type(liveSessionRow)`
    WITH live AS (
      SELECT s.id AS session_id, s.created_at, s.last_seen_at, u.id, u.email::text AS email, u.display_name
      FROM user_sessions s JOIN users u ON u.id = s.user_id
      WHERE s.token_hash = ${tokenHash} AND s.revoked_at IS NULL AND s.expires_at > now()
        AND s.last_seen_at > now() - make_interval(secs => ${idleSeconds}) AND u.disabled_at IS NULL
    ), touched AS (
      UPDATE user_sessions SET last_seen_at = now()
      WHERE id IN (SELECT session_id FROM live WHERE last_seen_at < now() - make_interval(secs => ${LAST_SEEN_PRECISION_SECONDS}))
    )
    SELECT id, email, display_name AS "displayName", session_id AS "sessionId", created_at AS "authTime" FROM live`);
  if (!row) return null;
  return { user: { id: row.id, email: row.email, displayName: row.displayName }, session: { id: row.sessionId, authTime: new Date(row.authTime) } };
}

/** Ends the session of this token; its id when it was live until now (so SSO sessions that came from it can follow). */
export async function revokeSession(db: CommonQueryMethods, tokenHash: string, reason: string): Promise<string | null> {
  return db.maybeOneFirst(sql.type(z.object({ id: z.string() }))`
    UPDATE user_sessions SET revoked_at = now(), ended_reason = ${reason}
    WHERE token_hash = ${tokenHash} AND revoked_at IS NULL
    RETURNING id`);
}
