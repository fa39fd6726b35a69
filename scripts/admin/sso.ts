import type { DatabasePool } from 'slonik';
import type { Client } from '@temporalio/client';
import { signalPmRolesChanged, signalPmUserDisabled } from '../../api/sso-session-signals';
import { livePortalSessionsOfPmUser } from '../../db/queries/portal-sessions';
import { findAdminUserByEmail } from '../../db/queries/user-administration';
import { AuditLog } from '../../platform/audit';
import { createLogger } from '../../platform/logger';
import { deleteRoleMapping, roleMappings, setRoleMapping } from '../../platform/sso/role-mappings';
import { disableUser, enableUser, findUserView, roleNames, setUserRoles, SsoAdministrationError, type AdminUserView } from '../../platform/sso/user-administration';
import { CommandFailed, UsageError, type AdminCommand, type OptionValues } from './command';
import { operatorId } from './connection-actions';
import type { AdminContext } from './context';
import { formatTable, printJson, timeCell } from './table';

/**
 * PM users' roles and disablement, and the PM-role to portal-roles mapping: the same changes as the
 * admin API (platform/sso), audited with the operator as actor. The users' SSO session workflows are
 * told when Temporal can be reached; when it cannot, the change stands all the same (every portal
 * request re-checks the PM side, and the workflows' own checks find it), and a note says so.
 */

const EMAIL = /^[^\s@]+@[^\s@]+$/;

function emailArgument(value: string): string {
  if (!EMAIL.test(value)) throw new UsageError(`<email>: "${value}" is not an email address`);
  return value;
}

/** A comma-separated list of role names; "" is none. Checked before anything is opened. */
function roleListArgument(value: string, what: string): string[] {
  const names = value.split(',').map((name) => name.trim()).filter((name) => name !== '');
  try {
    return roleNames(names, what);
  } catch (error) {
    if (error instanceof SsoAdministrationError) throw new UsageError(error.message);
    throw error;
  }
}

async function userOf(db: DatabasePool, email: string): Promise<string> {
  const user = await findAdminUserByEmail(db, email);
  if (!user) throw new CommandFailed(`no PM user with the email ${email}`);
  return user.id;
}

async function changing<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof SsoAdministrationError) throw new CommandFailed(error.message);
    throw error;
  }
}

/**
 * Tells the SSO session workflows, connecting to Temporal only when there are portal sessions to tell.
 * Answers whether they were told (false: Temporal could not be reached).
 */
async function tellWorkflows(context: AdminContext, portalSessionCount: number, send: (target: { temporal: Client; db: DatabasePool; log: ReturnType<typeof createLogger> }) => Promise<void>): Promise<boolean> {
  if (portalSessionCount === 0) return true;
  let temporal: Client;
  try {
    temporal = await context.temporalClient();
  } catch (error) {
    console.error(
      `admin: the change is made, but Temporal could not be reached (${error instanceof Error ? error.message : String(error)}); ` +
        'the portal applies it on its next request and the SSO session workflows on their next check',
    );
    return false;
  }
  await send({ temporal, db: await context.db(), log: createLogger({ logLevel: 'warn' }, process.stderr) });
  return true;
}

async function livePortalSessionCount(db: DatabasePool, pmUserIds: readonly string[]): Promise<number> {
  let count = 0;
  for (const pmUserId of pmUserIds) count += (await livePortalSessionsOfPmUser(db, pmUserId)).length;
  return count;
}

function printUser(values: OptionValues, user: AdminUserView, extra: Record<string, unknown>, summary: string): void {
  if (values.json) {
    printJson({ user: { ...user, disabledAt: user.disabledAt?.toISOString() ?? null }, ...extra });
    return;
  }
  console.log(summary);
  console.log(
    formatTable(
      ['USER', 'EMAIL', 'ROLES', 'ROLES VERSION', 'DISABLED', 'PORTAL ROLES'],
      [[user.id, user.email, user.roles.join(',') || '-', String(user.rolesVersion), timeCell(user.disabledAt?.toISOString()), user.portalAccount ? user.portalAccount.roles.join(',') || '-' : 'no portal account']],
    ),
  );
}

const operator = (values: OptionValues) => ({ actor: { type: 'operator' as const, id: operatorId(values) } });

export const usersRolesCommand: AdminCommand = {
  name: 'users roles',
  synopsis: '<email> <role,...> [--operator NAME] [--json]',
  summary: 'replace a PM user\'s roles ("" for none); their portal account gets the mapped portal roles at once',
  options: { operator: { type: 'string' }, json: { type: 'boolean' } },
  positionals: ['email', 'role,...'],
  async run({ values, positionals }, context) {
    const email = emailArgument(positionals[0]!);
    const roles = roleListArgument(positionals[1]!, '<role,...>');
    const by = operator(values);
    const db = await context.db();
    const userId = await userOf(db, email);
    const { user, changed } = await changing(() => setUserRoles(db, new AuditLog(db), userId, roles, by));
    const told = changed ? await tellWorkflows(context, await livePortalSessionCount(db, [userId]), (target) => signalPmRolesChanged(target, [userId])) : true;
    printUser(values, user, { changed, workflowsTold: told }, changed ? `roles of ${email} set to ${roles.join(',') || '(none)'}` : `roles of ${email} were already ${roles.join(',') || '(none)'}`);
    return 0;
  },
};

export const usersDisableCommand: AdminCommand = {
  name: 'users disable',
  synopsis: '<email> [--operator NAME] [--json]',
  summary: 'disable a PM user: no sign-in, every PM and portal session ends now, OAuth tokens stop working',
  options: { operator: { type: 'string' }, json: { type: 'boolean' } },
  positionals: ['email'],
  async run({ values, positionals }, context) {
    const email = emailArgument(positionals[0]!);
    const by = operator(values);
    const db = await context.db();
    const userId = await userOf(db, email);
    const outcome = await changing(() => disableUser(db, new AuditLog(db), userId, by));
    const told = await tellWorkflows(context, outcome.endedPortalSessionIds.length + (await livePortalSessionCount(db, [userId])), (target) =>
      signalPmUserDisabled(target, userId, outcome.endedPortalSessionIds),
    );
    const ended = { pmSessionsEnded: outcome.endedPmSessionIds.length, portalSessionsEnded: outcome.endedPortalSessionIds.length };
    printUser(
      values,
      outcome.user,
      { changed: outcome.changed, ...ended, workflowsTold: told },
      `${email} ${outcome.changed ? 'disabled' : 'was already disabled'}; ${ended.pmSessionsEnded} PM and ${ended.portalSessionsEnded} portal session(s) ended`,
    );
    return 0;
  },
};

export const usersEnableCommand: AdminCommand = {
  name: 'users enable',
  synopsis: '<email> [--operator NAME] [--json]',
  summary: 'let a disabled PM user sign in again',
  options: { operator: { type: 'string' }, json: { type: 'boolean' } },
  positionals: ['email'],
  async run({ values, positionals }, context) {
    const email = emailArgument(positionals[0]!);
    const by = operator(values);
    const db = await context.db();
    const { user, changed } = await changing(async () => enableUser(db, new AuditLog(db), await userOf(db, email), by));
    printUser(values, user, { changed }, `${email} ${changed ? 'enabled' : 'was not disabled'}`);
    return 0;
  },
};

export const usersShowCommand: AdminCommand = {
  name: 'users show',
  synopsis: '<email> [--json]',
  summary: "a PM user's roles, disablement and portal account",
  options: { json: { type: 'boolean' } },
  positionals: ['email'],
  async run({ values, positionals }, context) {
    const email = emailArgument(positionals[0]!);
    const db = await context.db();
    const user = await findUserView(db, await userOf(db, email));
    if (!user) throw new CommandFailed(`no PM user with the email ${email}`);
    printUser(values, user, {}, email);
    return 0;
  },
};

export const ssoRolesListCommand: AdminCommand = {
  name: 'sso-roles list',
  synopsis: '[--json]',
  summary: 'the PM roles and the portal roles each maps to',
  options: { json: { type: 'boolean' } },
  positionals: [],
  async run({ values }, context) {
    const mappings = await roleMappings(await context.db());
    if (values.json) {
      printJson({ mappings: mappings.map((mapping) => ({ ...mapping, updatedAt: mapping.updatedAt.toISOString() })) });
      return 0;
    }
    console.log(formatTable(['PM ROLE', 'PORTAL ROLES', 'UPDATED'], mappings.map((mapping) => [mapping.pmRole, mapping.portalRoles.join(',') || '-', timeCell(mapping.updatedAt.toISOString())])));
    return 0;
  },
};

function pmRoleArgument(value: string): string {
  const [role, ...more] = roleListArgument(value, '<pmRole>');
  if (role === undefined || more.length > 0) throw new UsageError(`<pmRole>: "${value}" is not one role name`);
  return role;
}

async function printMappingChange(values: OptionValues, context: AdminContext, db: DatabasePool, change: { changed: boolean; usersAffected: number; portalPmUserIds: string[] }, summary: string) {
  const told = change.changed ? await tellWorkflows(context, await livePortalSessionCount(db, change.portalPmUserIds), (target) => signalPmRolesChanged(target, change.portalPmUserIds)) : true;
  if (values.json) printJson({ changed: change.changed, usersAffected: change.usersAffected, workflowsTold: told });
  else console.log(`${summary}; ${change.usersAffected} PM user(s) hold the role`);
}

export const ssoRolesSetCommand: AdminCommand = {
  name: 'sso-roles set',
  synopsis: '<pmRole> <portalRole,...> [--operator NAME] [--json]',
  summary: 'map a PM role onto portal roles; its holders\' portal accounts get them at once',
  options: { operator: { type: 'string' }, json: { type: 'boolean' } },
  positionals: ['pmRole', 'portalRole,...'],
  async run({ values, positionals }, context) {
    const pmRole = pmRoleArgument(positionals[0]!);
    const portalRoles = roleListArgument(positionals[1]!, '<portalRole,...>');
    const by = operator(values);
    const db = await context.db();
    const change = await changing(() => setRoleMapping(db, new AuditLog(db), pmRole, portalRoles, by));
    await printMappingChange(values, context, db, change, change.changed ? `${pmRole} now maps to ${portalRoles.join(',') || '(nothing)'}` : `${pmRole} already mapped to ${portalRoles.join(',') || '(nothing)'}`);
    return 0;
  },
};

export const ssoRolesDeleteCommand: AdminCommand = {
  name: 'sso-roles delete',
  synopsis: '<pmRole> [--operator NAME] [--json]',
  summary: "remove a PM role's mapping: the role then gives no portal role",
  options: { operator: { type: 'string' }, json: { type: 'boolean' } },
  positionals: ['pmRole'],
  async run({ values, positionals }, context) {
    const pmRole = pmRoleArgument(positionals[0]!);
    const by = operator(values);
    const db = await context.db();
    const change = await changing(() => deleteRoleMapping(db, new AuditLog(db), pmRole, by));
    await printMappingChange(values, context, db, change, `the mapping of ${pmRole} is removed`);
    return 0;
  },
};
