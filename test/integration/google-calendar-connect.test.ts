import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { connectGoogleCalendar, GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { historyPayloadTexts } from '../helpers/history';
import { freshTokenUpdate } from '../../workflows/connection-messages';

/**
 * The first vertical slice end to end, on a real Temporal dev server, real Postgres and the fake
 * Google over HTTP: connect, keep, and really disconnect a Google Calendar connection.
 */
describe('Google Calendar connection (dev server)', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, google });
  });

  afterAll(async () => {
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  const connectionColumns = z.object({
    status: z.string(),
    accessTokenEnc: z.string().nullable(),
    refreshTokenEnc: z.string().nullable(),
    previousRefreshTokenEnc: z.string().nullable(),
    scopes: z.array(z.string()),
    revocationOutcome: z.string().nullable(),
  });
  const readConnection = (id: string) =>
    platform.db.one(sql.type(connectionColumns)`
      SELECT status, access_token_enc AS "accessTokenEnc", refresh_token_enc AS "refreshTokenEnc",
             previous_refresh_token_enc AS "previousRefreshTokenEnc", scopes, revocation_outcome AS "revocationOutcome"
      FROM integration_connections WHERE id = ${id}`);
  const auditActions = (connectionId: string) =>
    platform.db.anyFirst(sql.type(z.object({ action: z.string() }))`
      SELECT action FROM audit_log WHERE connection_id = ${connectionId} ORDER BY id`);

  it('connects, stores the tokens encrypted, and disconnects for real', async () => {
    const { userId, sessionToken } = await platform.signUp('ann@example.com');
    const authRedirect = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/auth`, {
      headers: { authorization: `Bearer ${sessionToken}` },
      redirect: 'manual',
    });
    const authorizeUrl = new URL(authRedirect.headers.get('location')!);
    expect(authorizeUrl.origin + authorizeUrl.pathname).toBe(google.authorizeUrl);
    expect(Object.fromEntries(authorizeUrl.searchParams)).toMatchObject({
      client_id: GOOGLE_TEST_CLIENT.clientId,
      response_type: 'code',
      code_challenge_method: 'S256',
      access_type: 'offline',
      prompt: 'consent',
      redirect_uri: `${platform.apiUrl}/api/v1/integrations/google-calendar/callback`,
    });
    expect(authorizeUrl.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(authorizeUrl.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const connected = await connectGoogleCalendar(platform, sessionToken);
    expect(connected.status).toBe(202);
    const { connectionId, workflowId } = connected.body as { connectionId: string; workflowId: string };
    expect(workflowId).toBe(`connection:google-calendar:${connectionId}`);

    // Active, its push channel opened and the calendar read once.
    const state = await waitForConnectionState(platform, workflowId, (s) => s.status === 'active' && (s.sync?.runCount ?? 0) >= 1);
    expect(state.accessTokenExpiresAt).toBeGreaterThan(Date.now() + 55 * 60 * 1000);
    expect(state.refreshDueAt).toBeLessThanOrEqual(state.accessTokenExpiresAt! - platform.config.tokenRefresh.marginSeconds * 1000);

    const stored = await readConnection(connectionId);
    expect(stored.status).toBe('active');
    expect(stored.scopes).toEqual(['openid', 'https://www.googleapis.com/auth/userinfo.email', 'https://www.googleapis.com/auth/calendar.readonly']);
    const [refreshToken] = google.liveRefreshTokens();
    expect(refreshToken).toBeDefined();
    for (const envelope of [stored.accessTokenEnc!, stored.refreshTokenEnc!]) {
      expect(envelope).toMatch(/^v1\.[A-Za-z0-9_-]+\./);
      for (const secret of google.issuedSecrets()) expect(envelope).not.toContain(secret);
    }
    const binding = { table: 'integration_connections', column: 'refresh_token_enc', rowId: connectionId };
    expect(platform.crypto.decrypt(stored.refreshTokenEnc!, binding)).toBe(refreshToken);

    const status = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/status`, { headers: { authorization: `Bearer ${sessionToken}` } });
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({
      provider: 'google-calendar',
      connected: true,
      connection: { id: connectionId, status: 'active', lastError: null, workflow: { id: workflowId, running: true, status: 'active' } },
    });

    const disconnect = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/disconnect`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sessionToken}` },
    });
    expect(disconnect.status).toBe(202);
    const outcome = await platform.client.workflow.getHandle(workflowId).result();
    expect(outcome).toEqual({ status: 'disconnected', revocation: 'revoked' });

    expect(google.isRevoked(refreshToken!)).toBe(true);
    expect(google.liveRefreshTokens()).toEqual([]);
    expect(await readConnection(connectionId)).toMatchObject({
      status: 'disconnected',
      accessTokenEnc: null,
      refreshTokenEnc: null,
      previousRefreshTokenEnc: null,
      revocationOutcome: 'revoked',
    });
    const description = await platform.client.workflow.getHandle(workflowId).describe();
    expect(description.status.name).toBe('COMPLETED');
    expect(await auditActions(connectionId)).toEqual(['IntegrationConnect', 'WebhookSubscriptionCreate', 'WebhookSubscriptionStop', 'OAuthRevoke', 'IntegrationDisconnect']);
    const userActions = await platform.db.anyFirst(sql.type(z.object({ action: z.string() }))`
      SELECT action FROM audit_log WHERE user_id = ${userId} AND connection_id IS NULL ORDER BY id`);
    expect(userActions).toEqual(['UserLogin', 'IntegrationConnectStarted', 'IntegrationConnectStarted']);

    const after = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/status`, { headers: { authorization: `Bearer ${sessionToken}` } });
    expect(await after.json()).toMatchObject({ connected: false, connection: { status: 'disconnected', revocation: 'revoked', workflow: { running: false } } });
  });

  it('re-authorizing an active connection keeps its workflow and stores the new grant', async () => {
    const { sessionToken } = await platform.signUp('carol@example.com');
    const first = await connectGoogleCalendar(platform, sessionToken);
    const { connectionId, workflowId } = first.body as { connectionId: string; workflowId: string };
    const before = await waitForConnectionState(platform, workflowId, (s) => s.status === 'active' && s.renewSubscriptionsAt !== undefined);

    const again = await connectGoogleCalendar(platform, sessionToken);
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ connectionId, workflowId });
    const after = await waitForConnectionState(platform, workflowId, (s) => s.tokenVersion > before.tokenVersion && s.setUpDueAt === undefined);
    expect(after.status).toBe('active');
    const stored = await readConnection(connectionId);
    const refreshToken = platform.crypto.decrypt(stored.refreshTokenEnc!, { table: 'integration_connections', column: 'refresh_token_enc', rowId: connectionId });
    expect(google.liveRefreshTokens()).toContain(refreshToken);
    // The re-consent kept the push channel the first authorization opened. The fake signed in another
    // Google account this time, so the first account's grant, kept by no one now, was revoked.
    expect(await auditActions(connectionId)).toEqual(['IntegrationConnect', 'WebhookSubscriptionCreate', 'IntegrationConnect', 'OAuthRevoke']);
  });

  it('disconnects a connection whose workflow was terminated: a new run revokes and wipes', async () => {
    const { sessionToken } = await platform.signUp('dave@example.com');
    const connected = await connectGoogleCalendar(platform, sessionToken);
    const { connectionId, workflowId } = connected.body as { connectionId: string; workflowId: string };
    await waitForConnectionState(platform, workflowId, (s) => s.status === 'active');
    const stored = await readConnection(connectionId);
    const refreshToken = platform.crypto.decrypt(stored.refreshTokenEnc!, { table: 'integration_connections', column: 'refresh_token_enc', rowId: connectionId });
    await platform.client.workflow.getHandle(workflowId).terminate('operator mistake');

    const disconnect = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/disconnect`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sessionToken}` },
    });
    expect(disconnect.status).toBe(202);
    expect(await platform.client.workflow.getHandle(workflowId).result()).toEqual({ status: 'disconnected', revocation: 'revoked' });
    expect(google.isRevoked(refreshToken)).toBe(true);
    expect(await readConnection(connectionId)).toMatchObject({ status: 'disconnected', accessTokenEnc: null, refreshTokenEnc: null });
  });

  it('keeps every token, code, verifier and the client secret out of the workflow history', async () => {
    // Tokens shorter than the refresh margin are refreshed at half their life, so the history holds real refreshes within seconds.
    const shortLivedGoogle = await startFakeGoogle({ ...GOOGLE_TEST_CLIENT, accessTokenLifetimeSeconds: 4 });
    const eager = await startTestPlatform({ temporal, google: shortLivedGoogle });
    try {
      const { sessionToken } = await eager.signUp('bob@example.com');
      const connected = await connectGoogleCalendar(eager, sessionToken);
      const { workflowId } = connected.body as { workflowId: string };
      await waitForConnectionState(eager, workflowId, (s) => s.refreshCount >= 2);
      const handle = eager.client.workflow.getHandle(workflowId);
      await handle.executeUpdate(freshTokenUpdate, { args: [{ minValiditySeconds: 3 }] });
      await fetch(`${eager.apiUrl}/api/v1/integrations/google-calendar/disconnect`, { method: 'POST', headers: { authorization: `Bearer ${sessionToken}` } });
      await handle.result();
      await expectNoSecretInHistory(handle, connected, sessionToken, shortLivedGoogle);
    } finally {
      await eager.close();
      await shortLivedGoogle.close();
    }
  });

  async function expectNoSecretInHistory(
    handle: ReturnType<typeof temporal.client.workflow.getHandle>,
    connected: Awaited<ReturnType<typeof connectGoogleCalendar>>,
    sessionToken: string,
    google: FakeGoogle,
  ): Promise<void> {
    const callback = new URL(connected.callbackUrl);
    const secrets = [
      ...google.issuedSecrets(),
      connected.codeVerifier,
      callback.searchParams.get('code')!,
      callback.searchParams.get('state')!,
      sessionToken,
    ];
    const tokenCalls = google.calls.filter((call) => call.endpoint === 'token').map((call) => call.grantType);
    expect(tokenCalls).toEqual(expect.arrayContaining(['authorization_code', 'refresh_token'])); // the exchange and the forced refresh really happened

    const texts = await historyPayloadTexts(handle);
    expect(texts.length).toBeGreaterThan(5);
    expect(texts.join('\n')).toContain('connectionId'); // the payloads were really decoded
    for (const secret of secrets) {
      for (const text of texts) expect(text).not.toContain(secret);
    }
  }
});
