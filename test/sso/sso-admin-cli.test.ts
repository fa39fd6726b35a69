import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { generateEncryptionKey } from '../../platform/integration-crypto';
import { runScript } from '../helpers/cli';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows, insertPortalSession, meStatus, signInPm, SSO_ENVIRONMENT } from '../helpers/sso-pm';

/**
 * `npm run admin -- users …` and `sso-roles …`, and `npm run create-user -- --roles`, as an operator runs
 * them: separate processes configured by environment variables against the api-server's database.
 * Temporal is needed only when there are SSO session workflows to tell; when it cannot be reached the
 * change stands and a note says so.
 */
describe('admin command line: PM users and SSO role mappings', { timeout: 120_000 }, () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer(SSO_ENVIRONMENT);
  });

  afterAll(async () => {
    await server?.close();
  });

  const run = (script: string, args: string[], env: Record<string, string> = {}) => runScript(script, args, { databaseUrl: server.config.databaseUrl!, env });
  const admin = (...args: string[]) => run('scripts/admin.ts', args);

  const userRoles = (email: string) =>
    server.db.one(sql.type(z.object({ roles: z.array(z.string()), rolesVersion: z.number(), disabled: z.boolean() }))`
      SELECT roles, roles_version AS "rolesVersion", disabled_at IS NOT NULL AS disabled FROM users WHERE email = ${email}`);

  it('lists, sets and deletes role mappings, audited with the operator', async () => {
    const listed = await admin('sso-roles', 'list');
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^owner\s+portal_admin,listing_editor/m);

    const set = await admin('sso-roles', 'set', 'agent', 'listing_editor,reports_viewer', '--operator', 'alice', '--json');
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ changed: true });
    const mappings = JSON.parse((await admin('sso-roles', 'list', '--json')).stdout) as { mappings: Array<{ pmRole: string; portalRoles: string[] }> };
    expect(mappings.mappings.find((mapping) => mapping.pmRole === 'agent')?.portalRoles).toEqual(['listing_editor', 'reports_viewer']);
    expect((await auditRows(server.db, 'SsoRoleMappingChange')).at(-1)).toMatchObject({ actorType: 'operator', actorId: 'alice', details: { pmRole: 'agent' } });

    const deleted = await admin('sso-roles', 'delete', 'agent');
    expect(deleted.code, deleted.stderr).toBe(0);
    const again = await admin('sso-roles', 'delete', 'agent');
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('no mapping for the PM role agent');
    expect((await admin('sso-roles', 'set', 'Agent', 'x')).code).toBe(2);
    expect((await admin('sso-roles', 'set', 'agent', 'not a role')).code).toBe(2);
  });

  it("replaces a user's roles without Temporal when the user has no portal session; bad usage changes nothing", async () => {
    const user = await server.createUser('cli-roles@example.com');
    const set = await admin('users', 'roles', user.email, 'owner,manager,owner');
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('roles of cli-roles@example.com set to manager,owner');
    expect(await userRoles(user.email)).toEqual({ roles: ['manager', 'owner'], rolesVersion: 1, disabled: false });
    expect((await auditRows(server.db, 'UserRolesChange')).at(-1)).toMatchObject({ actorType: 'operator', userId: user.id });

    expect((await admin('users', 'roles', user.email, 'Owner')).code).toBe(2);
    expect((await admin('users', 'roles', 'nobody@example.com', 'owner')).code).toBe(1);
    const cleared = await admin('users', 'roles', user.email, '', '--json');
    expect(JSON.parse(cleared.stdout)).toMatchObject({ changed: true, user: { roles: [] } });

    const shown = JSON.parse((await admin('users', 'show', user.email, '--json')).stdout) as { user: { roles: string[]; rolesVersion: number } };
    expect(shown.user).toMatchObject({ roles: [], rolesVersion: 2 });
  });

  it('disables a user (every session ends at once, even with Temporal unreachable), and enables them again', async () => {
    const user = await server.createUser('cli-disable@example.com');
    const pm = await signInPm(server, user.email, user.password);
    await insertPortalSession(server.db, user.id, pm.sessionId);
    const disabled = await run('scripts/admin.ts', ['users', 'disable', user.email, '--json'], { TEMPORAL_ADDRESS: '127.0.0.1:1', TEMPORAL_PAYLOAD_KEY: generateEncryptionKey() });
    expect(disabled.code, disabled.stderr).toBe(0);
    expect(JSON.parse(disabled.stdout)).toMatchObject({ changed: true, pmSessionsEnded: 1, portalSessionsEnded: 1, workflowsTold: false });
    expect(disabled.stderr).toContain('Temporal could not be reached');
    expect(await meStatus(server, pm.sessionToken)).toBe(401);
    expect((await userRoles(user.email)).disabled).toBe(true);
    expect((await auditRows(server.db, 'UserDisable')).at(-1)).toMatchObject({ actorType: 'operator', userId: user.id });

    const enabled = await admin('users', 'enable', user.email);
    expect(enabled.code, enabled.stderr).toBe(0);
    expect(enabled.stdout).toContain('cli-disable@example.com enabled');
    expect((await userRoles(user.email)).disabled).toBe(false);
    expect(await meStatus(server, (await signInPm(server, user.email, user.password)).sessionToken)).toBe(200);
  });

  it('creates a user with roles (npm run create-user -- --roles), and refuses a malformed role', async () => {
    const created = await run('scripts/create-user.ts', ['--email', 'cli-created@example.com', '--name', 'Created', '--roles', 'owner,agent'], { NEW_USER_PASSWORD: 'a long enough password' });
    expect(created.code, created.stderr).toBe(0);
    expect((await userRoles('cli-created@example.com')).roles).toEqual(['agent', 'owner']);
    const refused = await run('scripts/create-user.ts', ['--email', 'cli-refused@example.com', '--name', 'Refused', '--roles', 'Owner'], { NEW_USER_PASSWORD: 'a long enough password' });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--roles');
  });
});
