import type { DatabasePool } from 'slonik';
import { endPmSessions } from '../../db/queries/pm-sessions';
import { endPortalSessionsOfPmUser } from '../../db/queries/portal-sessions';
import {
  findAdminUser,
  lockUser,
  replaceUserRoles,
  setUserDisabled,
  type AdminUserRow,
} from '../../db/queries/user-administration';
import type { AuditEntry, AuditLog } from '../audit';
import { auditPortalSessionEnd } from '../portal/sessions';
import { InvalidRoleNames, roleNames as checkedRoleNames } from '../roles';
import { applyMappedPortalRoles } from './portal-roles';

/** An operator's change that cannot be made: the message says why (the admin API answers 404 or 400, the CLI exits 1 or 2). */
export class SsoAdministrationError extends Error {
  override name = 'SsoAdministrationError';

  constructor(
    readonly reason: 'not_found' | 'invalid_roles',
    message: string,
  ) {
    super(message);
  }
}

/** Checked, deduplicated and sorted role names (platform/roles.ts), refused as an operator's invalid change. */
export function roleNames(roles: readonly string[], what: string): string[] {
  try {
    return checkedRoleNames(roles, what);
  } catch (error) {
    if (error instanceof InvalidRoleNames) throw new SsoAdministrationError('invalid_roles', error.message);
    throw error;
  }
}

/** Who changes it, for the audit row: the admin API or an operator at the command line. */
export interface OperatorChange {
  actor: AuditEntry['actor'];
  origin?: AuditEntry['origin'];
}

export interface AdminUserView {
  id: string;
  email: string;
  displayName: string;
  roles: string[];
  rolesVersion: number;
  disabledAt: Date | null;
  /** The portal account linked to the PM user (created on their first SSO), with its mapped roles. */
  portalAccount: { id: string; roles: string[] } | null;
}

function view(row: AdminUserRow): AdminUserView {
  return {
    id: row.id,
    email: row.email,
    displayName: row.displayName,
    roles: row.roles,
    rolesVersion: row.rolesVersion,
    disabledAt: row.disabledAt === null ? null : new Date(row.disabledAt),
    portalAccount: row.portalUserId === null ? null : { id: row.portalUserId, roles: row.portalRoles ?? [] },
  };
}

export async function findUserView(db: DatabasePool, userId: string): Promise<AdminUserView | null> {
  const row = await findAdminUser(db, userId);
  return row && view(row);
}

async function requireUserView(db: DatabasePool, userId: string): Promise<AdminUserView> {
  const found = await findUserView(db, userId);
  if (!found) throw new SsoAdministrationError('not_found', `no PM user ${userId}`);
  return found;
}

const sameRoles = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((role, index) => role === b[index]);

/**
 * Replaces the PM user's roles. A change bumps roles_version (every portal session that applied an
 * older one re-applies the mapping on its next request), is audited as UserRolesChange, and is applied
 * to the user's portal account at once (SsoRolesApplied); the caller also tells the SSO session
 * workflows (signalPmRolesChanged). The same roles again change nothing.
 */
export async function setUserRoles(
  db: DatabasePool,
  audit: AuditLog,
  userId: string,
  roles: readonly string[],
  by: OperatorChange,
): Promise<{ user: AdminUserView; changed: boolean }> {
  const wanted = roleNames(roles, 'roles');
  const changed = await db.transaction(async (transaction) => {
    const current = await lockUser(transaction, userId);
    if (!current) throw new SsoAdministrationError('not_found', `no PM user ${userId}`);
    const previous = [...current.roles].sort();
    if (sameRoles(previous, wanted)) return false;
    const rolesVersion = await replaceUserRoles(transaction, userId, wanted);
    await audit.record(
      { action: 'UserRolesChange', outcome: 'success', actor: by.actor, userId, ...(by.origin ? { origin: by.origin } : {}), details: { roles: wanted, previousRoles: previous, rolesVersion } },
      transaction,
    );
    return true;
  });
  if (changed) await applyMappedPortalRoles(db, audit, userId, 'operator');
  return { user: await requireUserView(db, userId), changed };
}

/**
 * Disables the PM user: they cannot sign in (same answer as a wrong password), every live PM session
 * ends (ended_reason 'user_disabled'), and so does every portal session of their portal account, at
 * once and in the same transaction. Their OAuth grants stay but are not live while the user is
 * disabled (lockGrant, isLive): no refresh (voice clients are asked to retry later, so Alexa and Google
 * keep the link), no code exchange, introspection says inactive. Audited as UserDisable, and each
 * portal session it ended as SsoLogout (initiatedBy user_disabled): the SSO session workflows find the
 * pairs ended already and audit only what they end themselves or fail to deliver. The caller tells
 * those workflows (signalPmUserDisabled).
 *
 * Locks, in the one order every path takes: the user, then the PM sessions, then the portal sessions.
 */
export async function disableUser(
  db: DatabasePool,
  audit: AuditLog,
  userId: string,
  by: OperatorChange,
): Promise<{ user: AdminUserView; changed: boolean; endedPmSessionIds: string[]; endedPortalSessionIds: string[] }> {
  const outcome = await db.transaction(async (transaction) => {
    const current = await lockUser(transaction, userId);
    if (!current) throw new SsoAdministrationError('not_found', `no PM user ${userId}`);
    const changed = current.disabledAt === null;
    if (changed) await setUserDisabled(transaction, userId, true);
    const pmSessions = await endPmSessions(transaction, { userId }, 'user_disabled');
    const portalSessions = await endPortalSessionsOfPmUser(transaction, userId, 'user_disabled');
    for (const ended of portalSessions) {
      await auditPortalSessionEnd(audit, ended, 'user_disabled', { actor: by.actor, ...(by.origin ? { origin: by.origin } : {}), within: transaction });
    }
    if (changed || pmSessions.length > 0 || portalSessions.length > 0) {
      await audit.record(
        {
          action: 'UserDisable',
          outcome: 'success',
          actor: by.actor,
          userId,
          ...(by.origin ? { origin: by.origin } : {}),
          details: { alreadyDisabled: !changed, pmSessionsEnded: pmSessions.length, portalSessionsEnded: portalSessions.length },
        },
        transaction,
      );
    }
    return { changed, endedPmSessionIds: pmSessions.map((session) => session.id), endedPortalSessionIds: portalSessions.map((session) => session.id) };
  });
  return { user: await requireUserView(db, userId), ...outcome };
}

/** Lets a disabled PM user sign in again (their grants work again too); audited as UserEnable. Sessions that ended stay ended. */
export async function enableUser(db: DatabasePool, audit: AuditLog, userId: string, by: OperatorChange): Promise<{ user: AdminUserView; changed: boolean }> {
  const changed = await db.transaction(async (transaction) => {
    const current = await lockUser(transaction, userId);
    if (!current) throw new SsoAdministrationError('not_found', `no PM user ${userId}`);
    if (current.disabledAt === null) return false;
    await setUserDisabled(transaction, userId, false);
    await audit.record({ action: 'UserEnable', outcome: 'success', actor: by.actor, userId, ...(by.origin ? { origin: by.origin } : {}) }, transaction);
    return true;
  });
  return { user: await requireUserView(db, userId), changed };
}
