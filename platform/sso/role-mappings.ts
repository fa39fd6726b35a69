import type { DatabasePool } from 'slonik';
import {
  bumpRolesVersionOfRoleHolders,
  deleteRoleMapping as deleteMappingRow,
  listRoleMappings,
  lockRoleMapping,
  upsertRoleMapping,
  type RoleMappingRow,
} from '../../db/queries/sso-role-mappings';
import type { AuditLog } from '../audit';
import { applyMappedPortalRoles } from './portal-roles';
import { roleNames, SsoAdministrationError, type OperatorChange } from './user-administration';

export interface RoleMapping {
  pmRole: string;
  portalRoles: string[];
  updatedAt: Date;
}

export interface RoleMappingChange {
  changed: boolean;
  /** Every PM user holding the PM role: their roles_version moved on. */
  usersAffected: number;
  /** Those of them with a portal account, whose SSO session workflows the caller tells (signalPmRolesChanged). */
  portalPmUserIds: string[];
}

const mapping = (row: RoleMappingRow): RoleMapping => ({ pmRole: row.pmRole, portalRoles: row.portalRoles, updatedAt: new Date(row.updatedAt) });

export async function roleMappings(db: DatabasePool): Promise<RoleMapping[]> {
  return (await listRoleMappings(db)).map(mapping);
}

function pmRoleName(pmRole: string): string {
  const [name] = roleNames([pmRole], 'PM role');
  return name!;
}

/**
 * The change of a mapping, once committed: the holders' new roles_version goes with it, so their portal
 * sessions re-apply the mapping on their next request; here the holders' portal accounts get it at once.
 */
async function applyToHolders(db: DatabasePool, audit: AuditLog, holders: readonly { userId: string; hasPortalAccount: boolean }[]): Promise<string[]> {
  const portalPmUserIds = holders.filter((holder) => holder.hasPortalAccount).map((holder) => holder.userId);
  for (const pmUserId of portalPmUserIds) await applyMappedPortalRoles(db, audit, pmUserId, 'operator');
  return portalPmUserIds;
}

/** Sets what a PM role maps to (creating the mapping when there is none); audited as SsoRoleMappingChange. */
export async function setRoleMapping(
  db: DatabasePool,
  audit: AuditLog,
  pmRole: string,
  portalRoles: readonly string[],
  by: OperatorChange,
): Promise<{ mapping: RoleMapping } & RoleMappingChange> {
  const role = pmRoleName(pmRole);
  const wanted = roleNames(portalRoles, 'portal roles');
  const outcome = await db.transaction(async (transaction) => {
    const previous = await lockRoleMapping(transaction, role);
    if (previous && [...previous.portalRoles].sort().join(' ') === wanted.join(' ')) return { row: previous, holders: [] as const, changed: false };
    const row = await upsertRoleMapping(transaction, role, wanted);
    const holders = await bumpRolesVersionOfRoleHolders(transaction, role);
    await audit.record(
      {
        action: 'SsoRoleMappingChange',
        outcome: 'success',
        actor: by.actor,
        ...(by.origin ? { origin: by.origin } : {}),
        details: { pmRole: role, portalRoles: wanted, previousPortalRoles: previous?.portalRoles ?? null, usersAffected: holders.length },
      },
      transaction,
    );
    return { row, holders, changed: true };
  });
  const portalPmUserIds = await applyToHolders(db, audit, outcome.holders);
  return { mapping: mapping(outcome.row), changed: outcome.changed, usersAffected: outcome.holders.length, portalPmUserIds };
}

/** Removes a PM role's mapping (the role then gives no portal role); audited as SsoRoleMappingChange. */
export async function deleteRoleMapping(db: DatabasePool, audit: AuditLog, pmRole: string, by: OperatorChange): Promise<RoleMappingChange> {
  const role = pmRoleName(pmRole);
  const holders = await db.transaction(async (transaction) => {
    const previous = await lockRoleMapping(transaction, role);
    if (!previous) throw new SsoAdministrationError('not_found', `no mapping for the PM role ${role}`);
    await deleteMappingRow(transaction, role);
    const affected = await bumpRolesVersionOfRoleHolders(transaction, role);
    await audit.record(
      {
        action: 'SsoRoleMappingChange',
        outcome: 'success',
        actor: by.actor,
        ...(by.origin ? { origin: by.origin } : {}),
        details: { pmRole: role, portalRoles: null, previousPortalRoles: previous.portalRoles, usersAffected: affected.length },
      },
      transaction,
    );
    return affected;
  });
  return { changed: true, usersAffected: holders.length, portalPmUserIds: await applyToHolders(db, audit, holders) };
}
