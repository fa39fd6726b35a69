import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { newGoogleAccountId } from '../../fakes/google-tokens';
import { eventually } from '../helpers/eventually';
import { connectGoogleAccount } from '../helpers/google-calendar';
import { connectGoogleCalendar, GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';

/**
 * Issue 11, defects 2, 3 and 4 end to end (dev server, real Postgres, the fake Google over HTTP, whose
 * revocations end the account's whole grant as Google's do): a refused revocation finishes the
 * disconnect at once, a disconnect never revokes a grant another connection keeps, and tokens obtained
 * and then not kept are revoked.
 */
describe('upstream revocation under faults', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle({ ...GOOGLE_TEST_CLIENT, revocationEndsAccountGrants: true });
    platform = await startTestPlatform({ temporal, google });
  });

  afterAll(async () => {
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  beforeEach(() => google.reset());

  const connectionRow = z.object({ status: z.string(), refreshTokenEnc: z.string().nullable(), revocationOutcome: z.string().nullable() });
  const readConnection = (id: string) =>
    platform.db.one(sql.type(connectionRow)`
      SELECT status, refresh_token_enc AS "refreshTokenEnc", revocation_outcome AS "revocationOutcome" FROM integration_connections WHERE id = ${id}`);
  const refreshTokenOf = async (connectionId: string) =>
    platform.crypto.decrypt((await readConnection(connectionId)).refreshTokenEnc!, { table: 'integration_connections', column: 'refresh_token_enc', rowId: connectionId });
  const revocations = (connectionId: string) =>
    platform.db.any(sql.type(z.object({ outcome: z.string(), details: z.record(z.unknown()) }))`
      SELECT outcome, details FROM audit_log WHERE action = 'OAuthRevoke' AND connection_id = ${connectionId} ORDER BY id`);
  const revokeCalls = () => google.calls.filter((call) => call.endpoint === 'revoke').map((call) => call.status);

  async function activeConnection(email: string, account = newGoogleAccountId()) {
    const connection = await connectGoogleAccount(platform, google, email, account);
    await waitForConnectionState(platform, connection.workflowId, (s) => s.status === 'active' && s.setUpDueAt === undefined);
    return connection;
  }

  function disconnect(sessionToken: string) {
    return fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/disconnect`, { method: 'POST', headers: { authorization: `Bearer ${sessionToken}` } });
  }

  /** The disconnect's outcome once its workflow has completed (it must not wait out a 2-hour retry window). */
  async function disconnected(workflowId: string) {
    const handle = platform.client.workflow.getHandle(workflowId);
    await eventually(async () => (await handle.describe()).status.name === 'COMPLETED', 30_000, `workflow ${workflowId} completed`);
    return handle.result();
  }

  it('finishes a disconnect at once when the provider refuses the revocation for good, and lets the user reconnect', async () => {
    const { connectionId, workflowId, sessionToken } = await activeConnection('refused@example.com');
    google.switches.refuseRevocations = { status: 401, error: 'invalid_client' };

    expect((await disconnect(sessionToken)).status).toBe(202);
    expect(await disconnected(workflowId)).toEqual({ status: 'disconnected', revocation: 'failed' });
    expect(revokeCalls()).toEqual([401]); // asked once: a refusal is not retried
    expect(await readConnection(connectionId)).toEqual({ status: 'disconnected', refreshTokenEnc: null, revocationOutcome: 'failed' });
    expect(await revocations(connectionId)).toEqual([{ outcome: 'failure', details: { reason: expect.stringContaining('invalid_client') } }]);

    google.switches.refuseRevocations = undefined;
    const again = await connectGoogleCalendar(platform, sessionToken);
    expect(again.status).toBe(202);
    expect(again.body.connectionId).not.toBe(connectionId);
    await waitForConnectionState(platform, again.body.workflowId!, (s) => s.status === 'active');
  });

  it('still retries a revocation through an outage', async () => {
    const { connectionId, workflowId, sessionToken } = await activeConnection('outage@example.com');
    const refreshToken = await refreshTokenOf(connectionId);
    google.switches.failNext(1, 503);

    expect((await disconnect(sessionToken)).status).toBe(202);
    expect(await disconnected(workflowId)).toEqual({ status: 'disconnected', revocation: 'revoked' });
    expect(revokeCalls()).toEqual([503, 200]);
    expect(google.isRevoked(refreshToken)).toBe(true);
  });

  it('does not revoke a grant that another PM user keeps, and revokes it when the last one disconnects', async () => {
    const account = newGoogleAccountId();
    const first = await activeConnection('shared.first@example.com', account);
    const second = await activeConnection('shared.second@example.com', account);
    const secondToken = await refreshTokenOf(second.connectionId);

    expect((await disconnect(first.sessionToken)).status).toBe(202);
    expect(await disconnected(first.workflowId)).toEqual({ status: 'disconnected', revocation: 'skipped_shared_grant' });
    expect(revokeCalls()).toEqual([]);
    expect(google.isRevoked(secondToken)).toBe(false);
    expect(await revocations(first.connectionId)).toEqual([
      { outcome: 'success', details: { revocation: 'skipped_shared_grant', sharedGrantWith: [second.connectionId] } },
    ]);
    expect((await waitForConnectionState(platform, second.workflowId, () => true)).status).toBe('active');

    expect((await disconnect(second.sessionToken)).status).toBe(202);
    expect(await disconnected(second.workflowId)).toEqual({ status: 'disconnected', revocation: 'revoked' });
    expect(google.isRevoked(secondToken)).toBe(true);
  });

  it('revokes the grant a re-consent with another account replaced, and keeps one the same account renewed', async () => {
    const { connectionId, workflowId, sessionToken } = await activeConnection('reconsent@example.com');
    const first = await refreshTokenOf(connectionId);

    // The same account again: the new tokens join the grant we keep, so nothing is revoked.
    const sameAccount = (await platform.db.oneFirst(sql.type(z.object({ id: z.string() }))`
      SELECT provider_account_id AS id FROM integration_connections WHERE id = ${connectionId}`));
    const before = await waitForConnectionState(platform, workflowId, () => true);
    google.signInAs(sameAccount);
    try {
      expect((await connectGoogleCalendar(platform, sessionToken)).status).toBe(202);
    } finally {
      google.signInAs(undefined);
    }
    const renewed = await waitForConnectionState(platform, workflowId, (s) => s.tokenVersion > before.tokenVersion);
    const second = await refreshTokenOf(connectionId);
    expect(second).not.toBe(first);
    expect(revokeCalls()).toEqual([]);
    expect(google.isRevoked(second)).toBe(false);

    // Another account: the first account's grant is no longer kept by anyone, so it is revoked.
    google.signInAs(newGoogleAccountId());
    try {
      expect((await connectGoogleCalendar(platform, sessionToken)).status).toBe(202);
    } finally {
      google.signInAs(undefined);
    }
    await waitForConnectionState(platform, workflowId, (s) => s.tokenVersion > renewed.tokenVersion);
    const third = await refreshTokenOf(connectionId);
    await eventually(() => google.isRevoked(second), 30_000, 'the replaced grant revoked');
    expect(google.isRevoked(third)).toBe(false);
    expect(await revocations(connectionId)).toEqual([{ outcome: 'success', details: { reason: 'superseded_by_reconsent', revocation: 'revoked' } }]);
  });

  it('revokes the tokens of an authorization refused for a scope the user did not grant', async () => {
    const { sessionToken } = await platform.signUp('unticked@example.com');
    const liveBefore = new Set(google.liveRefreshTokens());
    const auth = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/auth`, { headers: { authorization: `Bearer ${sessionToken}` }, redirect: 'manual' });
    const authorizeUrl = new URL(auth.headers.get('location')!);
    // Granular consent: the user unticks the calendar scope.
    authorizeUrl.searchParams.set('scope', authorizeUrl.searchParams.get('scope')!.split(' ').filter((scope) => !scope.includes('calendar')).join(' '));
    const consent = await fetch(authorizeUrl, { redirect: 'manual' });
    const callback = await fetch(consent.headers.get('location')!, { headers: { authorization: `Bearer ${sessionToken}` } });
    expect(callback.status).toBe(202);
    const { connectionId, workflowId } = (await callback.json()) as { connectionId: string; workflowId: string };

    await waitForConnectionState(platform, workflowId, (s) => s.status === 'failed');
    expect(google.calls.some((call) => call.endpoint === 'token' && call.grantType === 'authorization_code' && call.status === 200)).toBe(true);
    expect(google.liveRefreshTokens().filter((token) => !liveBefore.has(token))).toEqual([]);
    expect(await revocations(connectionId)).toEqual([{ outcome: 'success', details: { reason: 'insufficient_scope', revocation: 'revoked' } }]);
  });

  it('a re-consent refused for a scope keeps the connection and its grant, drops the new tokens, and is audited', async () => {
    const { connectionId, workflowId, sessionToken } = await activeConnection('unticked.reconsent@example.com');
    const kept = await refreshTokenOf(connectionId);
    const before = await waitForConnectionState(platform, workflowId, () => true);
    const liveBefore = new Set(google.liveRefreshTokens());
    const auth = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/auth`, { headers: { authorization: `Bearer ${sessionToken}` }, redirect: 'manual' });
    const authorizeUrl = new URL(auth.headers.get('location')!);
    authorizeUrl.searchParams.set('scope', authorizeUrl.searchParams.get('scope')!.split(' ').filter((scope) => !scope.includes('calendar')).join(' '));
    const consent = await fetch(authorizeUrl, { redirect: 'manual' });
    expect((await fetch(consent.headers.get('location')!, { headers: { authorization: `Bearer ${sessionToken}` } })).status).toBe(202);

    const after = await waitForConnectionState(platform, workflowId, (s) => s.lastError?.kind === 'AuthorizationRejected');
    expect(after.lastError!.message).toContain('did not grant');
    expect(after).toMatchObject({ status: 'active', tokenVersion: before.tokenVersion });
    expect(await readConnection(connectionId)).toMatchObject({ status: 'active' });
    expect(await refreshTokenOf(connectionId)).toBe(kept);
    expect(google.isRevoked(kept)).toBe(false);
    await eventually(() => google.liveRefreshTokens().every((token) => liveBefore.has(token)), 30_000, 'the new tokens revoked');
    const connects = () =>
      platform.db.any(sql.type(z.object({ outcome: z.string(), details: z.record(z.unknown()) }))`
        SELECT outcome, details FROM audit_log WHERE action = 'IntegrationConnect' AND connection_id = ${connectionId} ORDER BY id`);
    // The workflow records the failure before it audits it.
    await eventually(async () => (await connects()).length === 2, 30_000, 'the failed re-consent audited');
    expect(await connects()).toEqual([
      { outcome: 'success', details: expect.objectContaining({ reauthorization: false }) },
      { outcome: 'failure', details: { reason: 'AuthorizationRejected', reauthorization: true, authorizationId: expect.any(String) } },
    ]);
  });

  it('revokes those tokens once Google is back when its revocation endpoint was down during the exchange', async () => {
    const { sessionToken } = await platform.signUp('unticked.outage@example.com');
    const liveBefore = new Set(google.liveRefreshTokens());
    google.switches.refuseRevocations = { status: 503, error: 'backend_error' };
    const auth = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/auth`, { headers: { authorization: `Bearer ${sessionToken}` }, redirect: 'manual' });
    const authorizeUrl = new URL(auth.headers.get('location')!);
    authorizeUrl.searchParams.set('scope', authorizeUrl.searchParams.get('scope')!.split(' ').filter((scope) => !scope.includes('calendar')).join(' '));
    const consent = await fetch(authorizeUrl, { redirect: 'manual' });
    const callback = await fetch(consent.headers.get('location')!, { headers: { authorization: `Bearer ${sessionToken}` } });
    const { connectionId, workflowId } = (await callback.json()) as { connectionId: string; workflowId: string };
    await eventually(() => revokeCalls().length > 0, 30_000, 'the exchange tried to revoke what it will not keep');
    expect(google.liveRefreshTokens().filter((token) => !liveBefore.has(token))).toHaveLength(1);

    google.switches.refuseRevocations = undefined;
    // The workflow's revocation retries after the outage, and the workflow ends only once it has.
    expect(await platform.client.workflow.getHandle(workflowId).result()).toEqual({ status: 'failed' });
    expect(google.liveRefreshTokens().filter((token) => !liveBefore.has(token))).toEqual([]);
    expect(await revocations(connectionId)).toEqual([{ outcome: 'success', details: { reason: 'insufficient_scope', revocation: 'revoked' } }]);
  });
});
