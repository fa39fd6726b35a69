import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPayloadConverter } from '@temporalio/common';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { sql } from 'slonik';
import { signalPmRolesChanged, signalPmSessionsEnded, signalPmUserDisabled, type SignalTarget } from '../../api/sso-session-signals';
import { createDatabasePool } from '../../db/pool';
import { generateEncryptionKey } from '../../platform/integration-crypto';
import { ssoSessionWorkflowId } from '../../workflows/sso-session-messages';
import { runScript } from '../helpers/cli';
import { ADMIN_TOKEN, startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { insertPortalSession, portalLogoutToken, sendPortalLogoutToken, signInPm, SSO_ENVIRONMENT } from '../helpers/sso-pm';
import { startTemporalDevServer } from '../helpers/temporal';

// No worker polls it: the workflows only collect what the api-server tells them, for the test to read.
const TASK_QUEUE = 'sso-signals-without-worker';

interface ReceivedSignal {
  name: string;
  input: unknown;
}

/**
 * What the PM side tells the SSO session workflows of the portal sessions that came from its sessions:
 * logout, a session replaced by a new sign-in, disablement and role changes, through the api-server
 * and through the admin command line. A logout the portal started reaches the PM session's other
 * portal sessions, and is not echoed back to the workflow that sent it.
 */
describe('the PM side tells the SSO session workflows', { timeout: 120_000 }, () => {
  let temporal: TestWorkflowEnvironment;
  let server: OAuthTestServer;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    server = await startOAuthTestServer(SSO_ENVIRONMENT, { temporal: temporal.client });
  });

  afterAll(async () => {
    await server?.close();
    await temporal?.teardown();
  });

  let userCount = 0;
  /** A signed-in PM user whose PM session has a portal session, with that portal session's workflow running. */
  async function ssoPair(roles: string[] = []) {
    const user = await server.createUser(`signals-${(userCount += 1)}@example.com`);
    const pm = await signInPm(server, user.email, user.password);
    const { portalSessionId } = await insertPortalSession(server.db, user.id, pm.sessionId);
    await server.db.query(sql.unsafe`UPDATE users SET roles = ${sql.array(roles, 'text')} WHERE id = ${user.id}`);
    const workflow = await temporal.client.workflow.start('ssoSessionWorkflow', { workflowId: ssoSessionWorkflowId(portalSessionId), taskQueue: TASK_QUEUE, args: [] });
    return { user, pm, portalSessionId, workflow };
  }

  async function signals(workflow: WorkflowHandle, decode = true): Promise<ReceivedSignal[]> {
    const history = await workflow.fetchHistory();
    return (history.events ?? []).flatMap((event) => {
      const signaled = event.workflowExecutionSignaledEventAttributes;
      if (!signaled) return [];
      const payload = signaled.input?.payloads?.[0];
      return [{ name: signaled.signalName ?? '', input: decode && payload ? defaultPayloadConverter.fromPayload(payload) : undefined }];
    });
  }

  const json = (method: string, path: string, headers: Record<string, string>, body?: unknown) =>
    fetch(`${server.url}${path}`, { method, headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const asAdmin = { authorization: `Bearer ${ADMIN_TOKEN}` };

  it('a PM logout ends the portal session through its workflow (pmSessionEnded, reason logout)', async () => {
    const { pm, workflow } = await ssoPair();
    expect((await json('POST', '/api/v1/auth/logout', { authorization: `Bearer ${pm.sessionToken}` })).status).toBe(204);
    expect(await signals(workflow)).toEqual([{ name: 'pmSessionEnded', input: { reason: 'logout' } }]);
  });

  it('a sign-in that replaces the presented session ends its portal session too (reason revoked)', async () => {
    const { user, pm, workflow } = await ssoPair();
    const again = await json('POST', '/api/v1/auth/login', { authorization: `Bearer ${pm.sessionToken}` }, { email: user.email, password: user.password });
    expect(again.status).toBe(200);
    expect(await signals(workflow)).toEqual([{ name: 'pmSessionEnded', input: { reason: 'revoked' } }]);
  });

  it('disabling the user tells the workflow of the portal session it already ended (reason user_disabled)', async () => {
    const { user, workflow } = await ssoPair();
    expect((await json('POST', `/api/v1/admin/users/${user.id}/disable`, asAdmin)).status).toBe(200);
    expect(await signals(workflow)).toEqual([{ name: 'pmSessionEnded', input: { reason: 'user_disabled' } }]);
  });

  it("a change of the user's roles, or of a mapping they hold, tells the workflow (rolesChanged)", async () => {
    const { user, workflow } = await ssoPair(['viewer']);
    expect((await json('PUT', `/api/v1/admin/users/${user.id}/roles`, asAdmin, { roles: ['agent'] })).status).toBe(200);
    expect((await json('PUT', '/api/v1/admin/sso/role-mappings/agent', asAdmin, { portalRoles: ['listing_editor', 'reports_viewer'] })).status).toBe(200);
    expect(await signals(workflow)).toEqual([
      { name: 'rolesChanged', input: undefined },
      { name: 'rolesChanged', input: undefined },
    ]);
  });

  it("a logout token from the portal tells the workflows of the PM session's other portal sessions, not the sender's", async () => {
    const { user, pm, workflow: sender } = await ssoPair();
    // A second portal session (another browser) opened from the same PM session, with its own workflow.
    const { portalSessionId: otherPortalSessionId } = await insertPortalSession(server.db, user.id, pm.sessionId);
    const other = await temporal.client.workflow.start('ssoSessionWorkflow', { workflowId: ssoSessionWorkflowId(otherPortalSessionId), taskQueue: TASK_QUEUE, args: [] });
    // The sender's portal session ended with the sign-out that made its workflow send the token.
    await server.db.query(sql.unsafe`
      UPDATE portal_sessions SET ended_at = now(), ended_reason = 'logout' WHERE id <> ${otherPortalSessionId} AND pm_session_id = ${pm.sessionId}`);
    const { token } = await portalLogoutToken(server, { sessionId: pm.sessionId, subject: user.id });
    const response = await sendPortalLogoutToken(server, token);
    expect(response.status).toBe(200);
    expect(await signals(other)).toEqual([{ name: 'pmSessionEnded', input: { reason: 'logout' } }]);
    expect(await signals(sender)).toEqual([]);
  });

  it('never throws, not even when the database cannot name the portal sessions to tell: it logs, and still tells those it was given', async () => {
    const { user, pm, portalSessionId, workflow } = await ssoPair();
    const closed = await createDatabasePool(server.config.databaseUrl!);
    await closed.end();
    const warnings: unknown[][] = [];
    const target: SignalTarget = { temporal: temporal.client, db: closed, log: { warn: (...args: unknown[]) => warnings.push(args) }, deadlineMs: server.config.sso.temporalDeadlineMs };

    await expect(signalPmSessionsEnded(target, [pm.sessionId], 'logout')).resolves.toBeUndefined();
    await expect(signalPmRolesChanged(target, [user.id])).resolves.toBeUndefined();
    // The sessions a disablement ended itself are named by the caller: their workflows are told all the same.
    await expect(signalPmUserDisabled(target, user.id, [portalSessionId])).resolves.toBeUndefined();
    expect(warnings).toHaveLength(3);
    expect(await signals(workflow)).toEqual([{ name: 'pmSessionEnded', input: { reason: 'user_disabled' } }]);
  });

  it('the admin command line tells the workflows too when Temporal can be reached', async () => {
    const { user, workflow } = await ssoPair(['viewer']);
    const env = { TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace ?? 'default', TEMPORAL_PAYLOAD_KEY: generateEncryptionKey() };
    const run = (...args: string[]) => runScript('scripts/admin.ts', args, { databaseUrl: server.config.databaseUrl!, env });
    const roles = await run('users', 'roles', user.email, 'owner', '--json');
    expect(roles, roles.stderr).toMatchObject({ code: 0 });
    expect(JSON.parse(roles.stdout)).toMatchObject({ changed: true, workflowsTold: true });
    const disable = await run('users', 'disable', user.email, '--json');
    expect(disable, disable.stderr).toMatchObject({ code: 0 });
    expect(JSON.parse(disable.stdout)).toMatchObject({ changed: true, portalSessionsEnded: 1, workflowsTold: true });
    // The command line's client encrypts payloads with its own key: the names say enough here.
    expect((await signals(workflow, false)).map((signal) => signal.name)).toEqual(['rolesChanged', 'pmSessionEnded']);
  });
});
