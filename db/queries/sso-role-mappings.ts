import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const mappingRow = z.object({ pmRole: z.string(), portalRoles: z.array(z.string()), updatedAt: z.number() });
export type RoleMappingRow = z.infer<typeof mappingRow>;

const MAPPING_COLUMNS = sql.fragment`pm_role AS "pmRole", portal_roles AS "portalRoles", updated_at AS "updatedAt"`;

export function listRoleMappings(db: CommonQueryMethods): Promise<readonly RoleMappingRow[]> {
  return db.any(sql.type(mappingRow)`SELECT ${MAPPING_COLUMNS} FROM sso_role_mappings ORDER BY pm_role`);
}

/** The mapping, locked: concurrent changes of one PM role are decided one after the other. */
export function lockRoleMapping(db: CommonQueryMethods, pmRole: string): Promise<RoleMappingRow | null> {
  return db.maybeOne(sql.type(mappingRow)`SELECT ${MAPPING_COLUMNS} FROM sso_role_mappings WHERE pm_role = ${pmRole} FOR UPDATE`);
}

export function upsertRoleMapping(db: CommonQueryMethods, pmRole: string, portalRoles: readonly string[]): Promise<RoleMappingRow> {
  return db.one(sql.type(mappingRow)`
    INSERT INTO sso_role_mappings (pm_role, portal_roles) VALUES (${pmRole}, ${sql.array([...portalRoles], 'text')})
    ON CONFLICT (pm_role) DO UPDATE SET portal_roles = EXCLUDED.portal_roles, updated_at = now()
    RETURNING ${MAPPING_COLUMNS}`);
}

export async function deleteRoleMapping(db: CommonQueryMethods, pmRole: string): Promise<void> {
  await db.query(sql.unsafe`DELETE FROM sso_role_mappings WHERE pm_role = ${pmRole}`);
}

/**
 * A mapping changed: every PM user holding the PM role gets a new roles_version, so their portal
 * sessions re-apply the mapping. Answers those users, and whether each has a portal account.
 */
export function bumpRolesVersionOfRoleHolders(db: CommonQueryMethods, pmRole: string): Promise<readonly { userId: string; hasPortalAccount: boolean }[]> {
  return db.any(sql.type(z.object({ userId: z.string(), hasPortalAccount: z.boolean() }))`
    UPDATE users u SET roles_version = u.roles_version + 1
    -- Locked in id order, so two mapping changes touching the same users never deadlock.
    FROM (SELECT id FROM users WHERE ${pmRole} = ANY (roles) ORDER BY id FOR NO KEY UPDATE) holders
    WHERE u.id = holders.id
    RETURNING u.id AS "userId", EXISTS (SELECT 1 FROM portal_users pu WHERE pu.pm_user_id = u.id) AS "hasPortalAccount"`);
}
