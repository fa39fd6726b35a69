import type { DatabasePool } from 'slonik';
import type { Client } from '@temporalio/client';
import { signalPmRolesChanged, signalPmUserDisabled, ssoSignalTarget, type SignalTarget } from '../../api/sso-session-signals';
import { livePortalSessionsOfPmUser } from '../../db/queries/portal-sessions';
import { findAdminUserByEmail } from '../../db/queries/user-administration';
import { AuditLog } from '../../platform/audit';
import { createLogger } from '../../platform/logger';
import { deleteRoleMapping, roleMappings, setRoleMapping } from '../../platform/sso/role-mappings';
import { disableUser, enableUser, findUserView, setUserRoles, SsoAdministrationError, type AdminUserView } from '../../platform/sso/user-administration';
import { CommandFailed, emailArgument, roleListArgument, UsageError, type AdminCommand, type OptionValues } from './command';
import { operatorId } from './connection-actions';
import type { AdminContext } from './context';
import { formatTable, printJson, timeCell } from './table';

/**
 * PM users' roles and disablement, and the PM-role to portal-roles mapping: the same changes as the
 * admin API (platform/sso), audited with the operator as actor. The users' SSO session workflows are
 * told when Temporal can be reached; when it cannot, the change stands all the same (every portal
 * request re-checks the PM side, and the workflows' own checks find it), and a note says so.
 */

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
async function tellWorkflows(context: AdminContext, portalSessionCount: number, send: (target: SignalTarget) => Promise<void>): Promise<boolean> {
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
  await send(ssoSignalTarget({ temporal, db: await context.db(), config: context.config() }, createLogger({ logLevel: 'warn' }, process.stderr)));
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

/**
 * A change an operator makes: its arguments are checked before anything is opened, then it is made
 * with the operator (--operator) as the audit row's actor.
 */
function operatorCommand<Args>(command: {
  name: string;
  /** The positionals' part of the synopsis. */
  synopsis: string;
  summary: string;
  positionals: string[];
  args(positionals: string[]): Args;
  change(args: Args, on: { db: DatabasePool; by: { actor: { type: 'operator'; id: string } }; values: OptionValues; context: AdminContext }): Promise<void>;
}): AdminCommand {
  return {
    name: command.name,
    synopsis: `${command.synopsis} [--operator NAME] [--json]`,
    summary: command.summary,
    options: { operator: { type: 'string' }, json: { type: 'boolean' } },
    positionals: command.positionals,
    async run({ values, positionals }, context) {
      const args = command.args(positionals);
      const by = { actor: { type: 'operator' as const, id: operatorId(values) } };
      await command.change(args, { db: await context.db(), by, values, context });
      return 0;
    },
  };
}

export const usersRolesCommand = operatorCommand({
  name: 'users roles',
  synopsis: '<email> <role,...>',
  summary: 'replace a PM user\'s roles ("" for none); their portal account gets the mapped portal roles at once',
  positionals: ['email', 'role,...'],
  args: ([email, roles]) => ({ email: emailArgument(email!, '<email>'), roles: roleListArgument(roles!, '<role,...>') }),
  async change({ email, roles }, { db, by, values, context }) {
    const userId = await userOf(db, email);
    const { user, changed } = await changing(() => setUserRoles(db, new AuditLog(db), userId, roles, by));
    const told = changed ? await tellWorkflows(context, await livePortalSessionCount(db, [userId]), (target) => signalPmRolesChanged(target, [userId])) : true;
    printUser(values, user, { changed, workflowsTold: told }, changed ? `roles of ${email} set to ${roles.join(',') || '(none)'}` : `roles of ${email} were already ${roles.join(',') || '(none)'}`);
  },
});

export const usersDisableCommand = operatorCommand({
  name: 'users disable',
  synopsis: '<email>',
  summary: 'disable a PM user: no sign-in, every PM and portal session ends now, OAuth tokens stop working',
  positionals: ['email'],
  args: ([email]) => emailArgument(email!, '<email>'),
  async change(email, { db, by, values, context }) {
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
  },
});

export const usersEnableCommand = operatorCommand({
  name: 'users enable',
  synopsis: '<email>',
  summary: 'let a disabled PM user sign in again',
  positionals: ['email'],
  args: ([email]) => emailArgument(email!, '<email>'),
  async change(email, { db, by, values }) {
    const { user, changed } = await changing(async () => enableUser(db, new AuditLog(db), await userOf(db, email), by));
    printUser(values, user, { changed }, `${email} ${changed ? 'enabled' : 'was not disabled'}`);
  },
});

export const usersShowCommand: AdminCommand = {
  name: 'users show',
  synopsis: '<email> [--json]',
  summary: "a PM user's roles, disablement and portal account",
  options: { json: { type: 'boolean' } },
  positionals: ['email'],
  async run({ values, positionals }, context) {
    const email = emailArgument(positionals[0]!, '<email>');
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

export const ssoRolesSetCommand = operatorCommand({
  name: 'sso-roles set',
  synopsis: '<pmRole> <portalRole,...>',
  summary: 'map a PM role onto portal roles; its holders\' portal accounts get them at once',
  positionals: ['pmRole', 'portalRole,...'],
  args: ([pmRole, portalRoles]) => ({ pmRole: pmRoleArgument(pmRole!), portalRoles: roleListArgument(portalRoles!, '<portalRole,...>') }),
  async change({ pmRole, portalRoles }, { db, by, values, context }) {
    const change = await changing(() => setRoleMapping(db, new AuditLog(db), pmRole, portalRoles, by));
    await printMappingChange(values, context, db, change, change.changed ? `${pmRole} now maps to ${portalRoles.join(',') || '(nothing)'}` : `${pmRole} already mapped to ${portalRoles.join(',') || '(nothing)'}`);
  },
});

export const ssoRolesDeleteCommand = operatorCommand({
  name: 'sso-roles delete',
  synopsis: '<pmRole>',
  summary: "remove a PM role's mapping: the role then gives no portal role",
  positionals: ['pmRole'],
  args: ([pmRole]) => pmRoleArgument(pmRole!),
  async change(pmRole, { db, by, values, context }) {
    const change = await changing(() => deleteRoleMapping(db, new AuditLog(db), pmRole, by));
    await printMappingChange(values, context, db, change, `the mapping of ${pmRole} is removed`);
  },
});
