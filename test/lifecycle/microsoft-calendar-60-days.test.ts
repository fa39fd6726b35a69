import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';
import { scanPlatformForSecrets } from '../helpers/secret-scan';
import { startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { connectMicrosoftCalendar, disconnectMicrosoftCalendar, MICROSOFT_TEST_CLIENT, microsoftEnvironment, microsoftStatus } from '../helpers/microsoft';
import { startFakeMicrosoft, type FakeIdentityCall, type FakeMicrosoft } from '../../fakes/microsoft';
import type { FakeGraphCall } from '../../fakes/microsoft-graph';
import { listCalendarEvents } from '../../db/queries/calendar-events';

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Microsoft access tokens live 60 to 90 minutes; the fake gives the average. */
const TOKEN_LIFETIME_MS = 4499 * 1000;
const SUBSCRIPTION_CAP_MS = 10080 * MINUTE;
const SYNC_INTERVAL_MS = 6 * HOUR;
/** About 1,400 provider calls in simulated time take minutes of real time on a busy 2-core machine. */
const TEST_TIMEOUT_MS = 5 * 60 * 1000;

/**
 * A Microsoft Calendar connection over 60 simulated days on Temporal's time-skipping server. The fake
 * kills a rotated refresh token at once (no grace), so any refresh that presents anything but the
 * newest refresh token fails: the connection survives only if the newest is never lost.
 */
describe('Microsoft Calendar connection over 60 days (time-skipping)', () => {
  let temporal: TestWorkflowEnvironment;
  let clock: SimulatedClock;
  let microsoft: FakeMicrosoft;
  let platform: TestPlatform;

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    clock = await SimulatedClock.of(temporal);
    microsoft = await startFakeMicrosoft({ ...MICROSOFT_TEST_CLIENT, clock: clock.now, accessTokenLifetimeSeconds: TOKEN_LIFETIME_MS / 1000, rotationGraceSeconds: 0 });
    platform = await startTestPlatform({ temporal, clock: clock.activityClock, environment: microsoftEnvironment(microsoft) });
  });

  afterAll(async () => {
    // Before the database goes: no token, code or secret the fake issued is left in plaintext anywhere.
    const scan = platform && (await scanPlatformForSecrets(platform, { extraSecrets: microsoft.issuedSecrets() }));
    await platform?.close();
    await microsoft?.close();
    await temporal?.teardown();
    expect(scan?.hits).toEqual([]);
    expect(scan?.historiesScanned).toBeGreaterThan(0);
  });

  const storedRefreshToken = async (connectionId: string) =>
    platform.crypto.decrypt(
      await platform.db.oneFirst(sql.type(z.object({ token: z.string() }))`SELECT refresh_token_enc AS token FROM integration_connections WHERE id = ${connectionId}`),
      { table: 'integration_connections', column: 'refresh_token_enc', rowId: connectionId },
    );
  const gaps = (times: number[]) => times.slice(1).map((time, index) => time - times[index]!);

  it('refreshes before expiry with rotation, renews the subscription within the cap and syncs on schedule for 60 days', async () => {
    await clock.catchUp();
    const { sessionToken } = await platform.signUp('sixty.days@example.com');
    const oid = microsoft.prepareAccount();
    const connected = await connectMicrosoftCalendar(platform, microsoft, sessionToken);
    const { connectionId, workflowId } = connected;
    await waitForConnectionState(platform, workflowId, (state) => (state.sync?.runCount ?? 0) >= 1);
    const startedAt = clock.now();

    let lateEvent: string | undefined;
    for (let elapsed = 0; elapsed < 60 * DAY; elapsed += 12 * HOUR) {
      if (elapsed === 30 * DAY) {
        lateEvent = microsoft.addEvent(oid, { subject: 'Booked mid-way', start: new Date(clock.now() + 10 * DAY).toISOString(), end: new Date(clock.now() + 11 * DAY).toISOString() });
      }
      await clock.advance(12 * HOUR);
    }
    expect(clock.now() - startedAt).toBeGreaterThanOrEqual(60 * DAY);

    // Refreshes: all before the token expired, each rotating, each presenting the newest refresh token.
    const tokenCalls = microsoft.calls.filter((call): call is FakeIdentityCall => call.endpoint === 'token');
    expect(tokenCalls[0]).toMatchObject({ grantType: 'authorization_code', status: 200 });
    const refreshes = tokenCalls.slice(1);
    expect(refreshes.length).toBeGreaterThan((60 * DAY) / TOKEN_LIFETIME_MS);
    expect(refreshes.filter((call) => call.status !== 200 || call.presented !== 'newest')).toEqual([]);
    for (const gap of gaps(tokenCalls.map((call) => call.at))) expect(gap).toBeLessThan(TOKEN_LIFETIME_MS);
    await waitForConnectionState(platform, workflowId, (state) => state.status === 'active');
    expect(await storedRefreshToken(connectionId)).toBe(microsoft.newestRefreshToken(oid));
    expect(microsoft.liveRefreshTokens(oid)).toEqual([microsoft.newestRefreshToken(oid)]);

    // One subscription for the whole time, renewed before the 7-day cap every time.
    const graphCalls = microsoft.calls.filter((call): call is FakeGraphCall => call.endpoint !== 'token' && call.endpoint !== 'authorize');
    const lifecycle = graphCalls.filter((call) => call.endpoint === 'subscriptions.create' || call.endpoint === 'subscriptions.renew');
    expect(lifecycle.filter((call) => call.endpoint === 'subscriptions.create')).toHaveLength(1);
    expect(lifecycle.filter((call) => call.status >= 300)).toEqual([]);
    expect(lifecycle.length).toBeGreaterThanOrEqual(9);
    for (const gap of gaps(lifecycle.map((call) => call.at))) expect(gap).toBeLessThan(SUBSCRIPTION_CAP_MS);
    expect(clock.now() - lifecycle.at(-1)!.at).toBeLessThan(SUBSCRIPTION_CAP_MS);
    expect(microsoft.liveSubscriptions(oid)).toHaveLength(1);

    // Scheduled syncs every 6 hours, never with an expired access token; the event added mid-way arrived.
    const runs = await platform.db.any(sql.type(z.object({ startedAt: z.number(), outcome: z.string().nullable() }))`
      SELECT started_at AS "startedAt", outcome FROM sync_runs WHERE connection_id = ${connectionId} ORDER BY started_at`);
    expect(runs.length).toBeGreaterThanOrEqual((60 * DAY) / SYNC_INTERVAL_MS);
    expect(runs.filter((run) => run.outcome !== 'succeeded')).toEqual([]);
    for (const gap of gaps(runs.map((run) => run.startedAt))) expect(gap).toBeLessThanOrEqual(SYNC_INTERVAL_MS + 10 * MINUTE);
    expect(graphCalls.filter((call) => call.status >= 300 || call.accessTokenExpired)).toEqual([]);
    expect((await listCalendarEvents(platform.db, connectionId)).map((event) => event.externalId)).toContain(lateEvent);

    expect((await disconnectMicrosoftCalendar(platform, sessionToken)).status).toBe(202);
    expect(await platform.client.workflow.getHandle(workflowId).result()).toEqual({ status: 'disconnected', revocation: 'not_supported' });
    expect(microsoft.liveSubscriptions(oid)).toEqual([]);
    expect(microsoft.revokeSignInSessionsCalls()).toBe(0);
  }, TEST_TIMEOUT_MS);

  it('replaces a subscription that lapsed at Graph; an expired grant (AADSTS70008) moves the connection to needs_reauth', async () => {
    await clock.catchUp();
    const { sessionToken } = await platform.signUp('lapsed@example.com');
    const { connectionId, workflowId, oid } = await connectMicrosoftCalendar(platform, microsoft, sessionToken);
    await waitForConnectionState(platform, workflowId, (state) => (state.sync?.runCount ?? 0) >= 1);
    const [lapsed] = microsoft.liveSubscriptions(oid);
    microsoft.switches.expireSubscriptions();

    await clock.advance(7 * DAY);
    const [replacement] = microsoft.liveSubscriptions(oid);
    expect(replacement!.id).not.toBe(lapsed!.id);
    const rows = await platform.db.any(sql.type(z.object({ externalId: z.string(), status: z.string() }))`
      SELECT external_id AS "externalId", status FROM webhook_subscriptions WHERE connection_id = ${connectionId} ORDER BY created_at`);
    expect(rows).toEqual([{ externalId: lapsed!.id, status: 'expired' }, { externalId: replacement!.id, status: 'active' }]);
    expect(await platform.db.oneFirst(sql.type(z.object({ details: z.record(z.unknown()) }))`
      SELECT details FROM audit_log WHERE connection_id = ${connectionId} AND action = 'WebhookSubscriptionStop'`)).toEqual({ subscriptionId: lapsed!.id, reason: 'gone_at_renewal' });

    microsoft.switches.invalidGrant = 70008;
    try {
      await clock.advance(2 * HOUR);
      const status = await microsoftStatus(platform, sessionToken);
      expect(status.connection).toMatchObject({ status: 'needs_reauth', lastError: { kind: 'invalid_grant', message: expect.stringContaining('AADSTS70008') } });
      const refusals = microsoft.calls.filter((call): call is FakeIdentityCall => call.endpoint === 'token' && call.status !== 200);
      // The newest refresh token, then (as with any invalid_grant) the one before it; no retries after that.
      expect(refusals).toEqual([
        expect.objectContaining({ status: 400, error: 'invalid_grant', aadsts: 70008, presented: 'newest' }),
        expect.objectContaining({ status: 400, error: 'invalid_grant', aadsts: 70008, presented: 'superseded' }),
      ]);
    } finally {
      microsoft.switches.invalidGrant = false;
    }
    await disconnectMicrosoftCalendar(platform, sessionToken);
    expect(await platform.client.workflow.getHandle(workflowId).result()).toEqual({ status: 'disconnected', revocation: 'not_supported' });
  }, TEST_TIMEOUT_MS);
});
