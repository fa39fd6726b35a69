import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';
import { scanPlatformForSecrets } from '../helpers/secret-scan';
import { startFakeGoogle, type FakeGoogle, type FakeGoogleCall } from '../../fakes/google';
import { freshTokenUpdate, statusQuery } from '../../workflows/connection-messages';
import { connectGoogleCalendar, GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';

const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;
const TOKEN_LIFETIME_MS = 3599 * 1000;

/**
 * Connections over simulated weeks on Temporal's time-skipping server. The fake Google and the
 * activities share one simulated clock: whatever time the server had when it scheduled the
 * activity, or when the test last asked it.
 */
// Simulated weeks take real minutes on a loaded 2-core machine.
describe('Google Calendar connection lifecycle (time-skipping)', { timeout: 5 * 60_000 }, () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  let clock: SimulatedClock;

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    clock = await SimulatedClock.of(temporal);
    google = await startFakeGoogle({ ...GOOGLE_TEST_CLIENT, clock: clock.now });
    platform = await startTestPlatform({ temporal, google, clock: clock.activityClock });
  });

  afterAll(async () => {
    // Before the database goes: no token, code or secret Google issued is left in plaintext anywhere.
    const scan = platform && (await scanPlatformForSecrets(platform, { extraSecrets: google.issuedSecrets() }));
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
    expect(scan?.hits).toEqual([]);
    expect(scan?.secretsLookedFor).toBeGreaterThan(0);
    expect(scan?.historiesScanned).toBeGreaterThan(0);
  });

  async function connect(email: string) {
    await clock.catchUp();
    const { sessionToken } = await platform.signUp(email);
    const since = google.calls.length;
    const connected = await connectGoogleCalendar(platform, sessionToken);
    const { workflowId, connectionId } = connected.body as { workflowId: string; connectionId: string };
    await waitForConnectionState(platform, workflowId, (state) => state.status === 'active');
    const handle = platform.client.workflow.getHandle(workflowId);
    return { sessionToken, workflowId, connectionId, handle, tokenCallsSince: () => tokenCalls(since) };
  }

  function tokenCalls(since: number): FakeGoogleCall[] {
    return google.calls.slice(since).filter((call) => call.endpoint === 'token');
  }

  const auditCount = (connectionId: string, action: string) =>
    platform.db.oneFirst(sql.type(z.object({ count: z.number() }))`
      SELECT count(*)::int AS count FROM audit_log WHERE connection_id = ${connectionId} AND action = ${action}`);

  /** Uses the connection as a calendar sync would: asks its workflow for a usable token, then calls the API. */
  async function useCalendar(connection: { connectionId: string; handle: ReturnType<typeof temporal.client.workflow.getHandle> }) {
    await connection.handle.executeUpdate(freshTokenUpdate, { args: [{ minValiditySeconds: 120 }] });
    const sealed = await platform.db.oneFirst(sql.type(z.object({ token: z.string() }))`
      SELECT access_token_enc AS token FROM integration_connections WHERE id = ${connection.connectionId}`);
    const accessToken = platform.crypto.decrypt(sealed, { table: 'integration_connections', column: 'access_token_enc', rowId: connection.connectionId });
    await clock.catchUp();
    return fetch(`${google.calendarApiUrl}/users/me/calendarList`, { headers: { authorization: `Bearer ${accessToken}` } });
  }

  it('keeps a connection alive for 30 days: every refresh before expiry, no expired token used, bounded history', async () => {
    const connection = await connect('thirty.days@example.com');
    const firstRunId = (await connection.handle.describe()).runId;
    const startedAt = clock.now();

    // A consumer uses the calendar every 7 hours (never in step with the hourly refreshes).
    for (let elapsed = 0; elapsed < 30 * DAY; elapsed += 7 * HOUR) {
      await clock.advance(7 * HOUR);
      expect((await useCalendar(connection)).status).toBe(200);
    }

    const calls = connection.tokenCallsSince();
    expect(calls[0]!.grantType).toBe('authorization_code');
    const refreshes = calls.slice(1);
    expect(refreshes.every((call) => call.grantType === 'refresh_token' && call.status === 200)).toBe(true);
    // Hourly tokens over 30 days: roughly one refresh per (lifetime - margin).
    expect(refreshes.length).toBeGreaterThan((30 * DAY) / TOKEN_LIFETIME_MS);
    for (let index = 1; index < calls.length; index++) {
      const sincePrevious = calls[index]!.at - calls[index - 1]!.at;
      expect(sincePrevious).toBeLessThan(TOKEN_LIFETIME_MS); // refreshed before the previous token expired
      expect(sincePrevious).toBeGreaterThanOrEqual(TOKEN_LIFETIME_MS - (300 + 60) * 1000 - 1000); // and not needlessly early
    }
    expect(clock.now() - startedAt).toBeGreaterThanOrEqual(30 * DAY);

    const apiCalls = google.calls.filter((call) => call.endpoint === 'calendarList');
    expect(apiCalls.length).toBeGreaterThanOrEqual(100);
    expect(apiCalls.filter((call) => call.accessTokenExpired || call.status !== 200)).toEqual([]);

    const description = await connection.handle.describe();
    expect(description.runId).not.toBe(firstRunId); // continue-as-new happened
    expect((await connection.handle.fetchHistory()).events!.length).toBeLessThan(2000);
    expect(await auditCount(connection.connectionId, 'OAuthTokenRefresh')).toBe(refreshes.length);

    await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/disconnect`, {
      method: 'POST',
      headers: { authorization: `Bearer ${connection.sessionToken}` },
    });
    expect(await connection.handle.result()).toEqual({ status: 'disconnected', revocation: 'revoked' });
  });

  it('retries a burst of 5xx and 429 answers and still refreshes before the token expires', async () => {
    const connection = await connect('flaky.provider@example.com');
    const { accessTokenExpiresAt, tokenVersion } = await connection.handle.query(statusQuery);
    google.switches.failNext(4, 503);

    await clock.advance(HOUR);
    const calls = connection.tokenCallsSince().slice(1);
    expect(calls.slice(0, 4).map((call) => call.status)).toEqual([503, 503, 503, 503]);
    const success = calls.find((call) => call.status === 200)!;
    expect(success.grantType).toBe('refresh_token');
    expect(success.at).toBeLessThan(accessTokenExpiresAt!);
    const state = await connection.handle.query(statusQuery);
    expect(state).toMatchObject({ status: 'active', tokenVersion: tokenVersion + 1 });

    google.switches.failNext(2, 429);
    await clock.advance(HOUR);
    const later = await connection.handle.query(statusQuery);
    expect(later.tokenVersion).toBe(tokenVersion + 2);
    expect(later.accessTokenExpiresAt).toBeGreaterThan(clock.now());
    await connection.handle.signal('disconnect', { requestedBy: { type: 'system' } });
    await connection.handle.result();
  });

  it('moves to needs_reauth on invalid_grant, audits it once and stops calling Google', async () => {
    const connection = await connect('revoked.grant@example.com');
    google.switches.invalidGrant = true;
    try {
      await clock.advance(HOUR);
      const state = await connection.handle.query(statusQuery);
      expect(state.status).toBe('needs_reauth');
      expect(state.lastError).toMatchObject({ kind: 'invalid_grant' });
      const callsAtReauth = connection.tokenCallsSince().length;

      await clock.advance(3 * DAY);
      expect(connection.tokenCallsSince().length).toBe(callsAtReauth); // no retry storm
      expect(connection.tokenCallsSince().filter((call) => call.error === 'invalid_grant')).toHaveLength(1);
      expect(await auditCount(connection.connectionId, 'IntegrationNeedsReauth')).toBe(1);

      const status = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/status`, {
        headers: { authorization: `Bearer ${connection.sessionToken}` },
      });
      expect(await status.json()).toMatchObject({
        connected: false,
        connection: { status: 'needs_reauth', lastError: { kind: 'invalid_grant' }, workflow: { running: true, status: 'needs_reauth' } },
      });
    } finally {
      google.switches.invalidGrant = false;
    }
  });
});
