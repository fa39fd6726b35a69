import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const userRow = z.object({ id: z.string().uuid(), email: z.string(), displayName: z.string() });
export type UserRow = z.infer<typeof userRow>;

const USER_COLUMNS = sql.fragment`id, email::text AS email, display_name AS "displayName"`;

export function insertUser(db: CommonQueryMethods, user: { email: string; displayName: string; passwordHash: string }): Promise<UserRow> {
  return db.one(sql.type(userRow)`
    INSERT INTO users (email, display_name, password_hash)
    VALUES (${user.email}, ${user.displayName}, ${user.passwordHash})
    RETURNING ${USER_COLUMNS}`);
}

export function findUserCredentials(db: CommonQueryMethods, email: string) {
  return db.maybeOne(sql.type(userRow.extend({ passwordHash: z.string() }))`
    SELECT ${USER_COLUMNS}, password_hash AS "passwordHash" FROM users WHERE email = ${email}`);
}

export async function insertSession(db: CommonQueryMethods, session: { userId: string; tokenHash: string; expiresAt: Date }): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO user_sessions (user_id, token_hash, expires_at)
    VALUES (${session.userId}, ${session.tokenHash}, ${sql.timestamp(session.expiresAt)})`);
}

export function findUserBySession(db: CommonQueryMethods, tokenHash: string): Promise<UserRow | null> {
  return db.maybeOne(sql.type(userRow)`
    SELECT u.id, u.email::text AS email, u.display_name AS "displayName"
    FROM user_sessions s JOIN users u ON u.id = s.user_id
    WHERE s.token_hash = ${tokenHash} AND s.revoked_at IS NULL AND s.expires_at > now()`);
}

export async function revokeSession(db: CommonQueryMethods, tokenHash: string): Promise<void> {
  await db.query(sql.unsafe`UPDATE user_sessions SET revoked_at = now() WHERE token_hash = ${tokenHash} AND revoked_at IS NULL`);
}
