import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const adminUserRow = z.object({
  id: z.string(),
  email: z.string(),
  displayName: z.string(),
  roles: z.array(z.string()),
  rolesVersion: z.number(),
  disabledAt: z.number().nullable(),
  /** The portal account linked to the user (created on their first SSO), if any. */
  portalUserId: z.string().nullable(),
  portalRoles: z.array(z.string()).nullable(),
});
export type AdminUserRow = z.infer<typeof adminUserRow>;

const ADMIN_USER_SELECT = sql.fragment`
  SELECT u.id, u.email::text AS email, u.display_name AS "displayName", u.roles, u.roles_version AS "rolesVersion",
         u.disabled_at AS "disabledAt", pu.id AS "portalUserId", pu.roles AS "portalRoles"
  FROM users u LEFT JOIN portal_users pu ON pu.pm_user_id = u.id`;

export function findAdminUser(db: CommonQueryMethods, userId: string): Promise<AdminUserRow | null> {
  return db.maybeOne(sql.type(adminUserRow)`${ADMIN_USER_SELECT} WHERE u.id = ${userId}`);
}

export function findAdminUserByEmail(db: CommonQueryMethods, email: string): Promise<AdminUserRow | null> {
  return db.maybeOne(sql.type(adminUserRow)`${ADMIN_USER_SELECT} WHERE u.email = ${email}`);
}

/**
 * Locks the user's row and answers their roles: concurrent changes of one user's roles or disablement
 * are decided one after the other.
 */
export function lockUser(db: CommonQueryMethods, userId: string): Promise<{ roles: readonly string[]; disabledAt: number | null } | null> {
  return db.maybeOne(sql.type(z.object({ roles: z.array(z.string()), disabledAt: z.number().nullable() }))`
    SELECT roles, disabled_at AS "disabledAt" FROM users WHERE id = ${userId} FOR NO KEY UPDATE`);
}

/** New roles, and a new roles_version: portal sessions that applied an older one re-apply the mapping. */
export function replaceUserRoles(db: CommonQueryMethods, userId: string, roles: readonly string[]): Promise<number> {
  return db.oneFirst(sql.type(z.object({ rolesVersion: z.number() }))`
    UPDATE users SET roles = ${sql.array([...roles], 'text')}, roles_version = roles_version + 1 WHERE id = ${userId}
    RETURNING roles_version AS "rolesVersion"`);
}

export async function setUserDisabled(db: CommonQueryMethods, userId: string, disabled: boolean): Promise<void> {
  await db.query(sql.unsafe`UPDATE users SET disabled_at = ${disabled ? sql.fragment`now()` : null} WHERE id = ${userId}`);
}

