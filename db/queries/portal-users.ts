import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const portalUserRow = z.object({
  id: z.string(),
  /** The PM user this account belongs to; null for a portal-only account. */
  pmUserId: z.string().nullable(),
  email: z.string(),
  displayName: z.string(),
  roles: z.array(z.string()),
});
export type PortalUserRow = z.infer<typeof portalUserRow>;

const PORTAL_USER_COLUMNS = sql.fragment`id, pm_user_id AS "pmUserId", email::text AS email, display_name AS "displayName", roles`;

/**
 * The portal account of a PM user, created on their first SSO, found by the PM user's id only (never by
 * email: a portal-only account with the same email stays another account). Email and display name follow
 * the PM user's at every SSO. The account's row stays locked until the caller's transaction ends.
 */
export function upsertLinkedPortalUser(db: CommonQueryMethods, pmUserId: string): Promise<PortalUserRow> {
  return db.one(sql.type(portalUserRow)`
    INSERT INTO portal_users (pm_user_id, email, display_name)
    SELECT u.id, u.email, u.display_name FROM users u WHERE u.id = ${pmUserId}
    ON CONFLICT (pm_user_id) DO UPDATE SET email = excluded.email, display_name = excluded.display_name,
      updated_at = CASE WHEN (portal_users.email, portal_users.display_name) IS DISTINCT FROM (excluded.email, excluded.display_name)
        THEN now() ELSE portal_users.updated_at END
    RETURNING ${PORTAL_USER_COLUMNS}`);
}

export function insertLocalPortalUser(
  db: CommonQueryMethods,
  user: { email: string; displayName: string; passwordHash: string; roles: string[] },
): Promise<PortalUserRow> {
  return db.one(sql.type(portalUserRow)`
    INSERT INTO portal_users (email, display_name, password_hash, roles)
    VALUES (${user.email}, ${user.displayName}, ${user.passwordHash}, ${sql.array(user.roles, 'text')})
    RETURNING ${PORTAL_USER_COLUMNS}`);
}

/** A portal-only account's password hash, when the account exists. */
export function findLocalPortalUserCredentials(db: CommonQueryMethods, email: string) {
  return db.maybeOne(sql.type(portalUserRow.extend({ passwordHash: z.string() }))`
    SELECT ${PORTAL_USER_COLUMNS}, password_hash AS "passwordHash"
    FROM portal_users WHERE email = ${email} AND pm_user_id IS NULL`);
}
