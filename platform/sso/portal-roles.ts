import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { AuditLog } from '../audit';

/**
 * What applied the mapping: the SSO login, a portal request that saw a newer roles_version, the SSO
 * session workflow, or an operator's change of the user's roles or of a mapping (admin API, CLI).
 */
export type RoleApplicationTrigger = 'sso_login' | 'request' | 'workflow' | 'operator';

export interface AppliedPortalRoles {
  portalUserId: string;
  roles: string[];
  /** The PM user's roles_version the roles were computed from. */
  rolesVersion: number;
  /** Whether the portal roles differ from what the account had before. */
  changed: boolean;
}

const lockedAccount = z.object({ portalUserId: z.string(), previousRoles: z.array(z.string()) });
const computed = z.object({ roles: z.array(z.string()), rolesVersion: z.number() });

/**
 * Maps the PM user's roles onto the portal account linked to them (sso_role_mappings; a PM role without
 * a mapping gives nothing) and marks every live portal session of the account as up to date with the
 * PM user's roles_version. The portal account's row is locked first, in a statement of its own, so
 * concurrent applications serialise and each computes the roles from what committed before it got the
 * lock (a statement that waited for the lock would still read the users row and the mappings as they
 * were when it began). Null when the PM user has no portal account. A change is audited
 * as SsoRolesApplied. `db` may be an open transaction (the SSO login's), which this joins as a savepoint.
 */
export async function applyMappedPortalRoles(
  db: CommonQueryMethods,
  audit: AuditLog,
  pmUserId: string,
  trigger: RoleApplicationTrigger,
): Promise<AppliedPortalRoles | null> {
  return db.transaction(async (transaction) => {
    const account = await transaction.maybeOne(sql.type(lockedAccount)`
      SELECT id AS "portalUserId", roles AS "previousRoles" FROM portal_users WHERE pm_user_id = ${pmUserId} FOR UPDATE`);
    if (!account) return null;
    const mapped = await transaction.maybeOne(sql.type(computed)`
      SELECT u.roles_version AS "rolesVersion",
        coalesce((
          SELECT array_agg(DISTINCT portal_role ORDER BY portal_role)
          FROM unnest(u.roles) AS held(pm_role)
          JOIN sso_role_mappings m ON m.pm_role = held.pm_role
          CROSS JOIN LATERAL unnest(m.portal_roles) AS portal_role
        ), '{}') AS roles
      FROM users u WHERE u.id = ${pmUserId}`);
    if (!mapped) return null;
    const row = { ...account, ...mapped };
    const changed = row.roles.join(' ') !== [...row.previousRoles].sort().join(' ');
    if (changed) {
      await transaction.query(sql.unsafe`UPDATE portal_users SET roles = ${sql.array(row.roles, 'text')}, updated_at = now() WHERE id = ${row.portalUserId}`);
    }
    await transaction.query(sql.unsafe`
      UPDATE portal_sessions SET roles_version = ${row.rolesVersion}
      WHERE portal_user_id = ${row.portalUserId} AND ended_at IS NULL AND pm_session_id IS NOT NULL`);
    if (changed) {
      await audit.record(
        {
          action: 'SsoRolesApplied',
          outcome: 'success',
          actor: { type: 'system' },
          userId: pmUserId,
          details: { portalUserId: row.portalUserId, roles: row.roles, previousRoles: row.previousRoles, rolesVersion: row.rolesVersion, trigger },
        },
        transaction,
      );
    }
    return { portalUserId: row.portalUserId, roles: row.roles, rolesVersion: row.rolesVersion, changed };
  });
}
