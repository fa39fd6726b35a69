import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';
import { scanPlatformForSecrets } from '../helpers/secret-scan';
import type { FakeAirbnb, FakeAirbnbOAuthCall } from '../../fakes/airbnb';
import { startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { airbnbEnvironment, apiRequest, connectAirbnb, createProperty, startTestAirbnb, storedAirbnbReservations } from '../helpers/airbnb';

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const SYNC_INTERVAL_MS = 6 * HOUR;
const TOKEN_LIFETIME_MS = DAY;

/**
 * Sixty simulated days of one Airbnb connection on Temporal's time-skipping server. The fake Airbnb and
 * the activities share one simulated clock, so the fake's `expires_at` and the workflow's timers agree.
 */
describe('Airbnb connection over 60 days (time-skipping)', () => {
  let temporal: TestWorkflowEnvironment;
  let airbnb: FakeAirbnb;
  let platform: TestPlatform;
  let clock: SimulatedClock;

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    clock = await SimulatedClock.of(temporal);
    airbnb = await startTestAirbnb(clock.now);
    platform = await startTestPlatform({
      temporal,
      clock: clock.activityClock,
      environment: airbnbEnvironment(airbnb, { AIRBNB_RESERVATION_SYNC_INTERVAL_SECONDS: String(SYNC_INTERVAL_MS / 1000) }),
    });
  });

  afterAll(async () => {
    // Before the database goes: no token, code or secret the fake issued is left in plaintext anywhere.
    const scan = platform && (await scanPlatformForSecrets(platform, { extraSecrets: airbnb.issuedSecrets() }));
    await platform?.close();
    await airbnb?.close();
    await temporal?.teardown();
    expect(scan?.hits).toEqual([]);
    expect(scan?.historiesScanned).toBeGreaterThan(0);
  });

  const syncRuns = (connectionId: string) =>
    platform.db.any(sql.type(z.object({ startedAt: z.number(), outcome: z.string().nullable(), reason: z.string() }))`
      SELECT started_at AS "startedAt", outcome, reason FROM sync_runs WHERE connection_id = ${connectionId} ORDER BY started_at, id`);
  const storedRefreshTokens = async (connectionId: string) => {
    const row = await platform.db.one(sql.type(z.object({ current: z.string(), previous: z.string().nullable() }))`
      SELECT refresh_token_enc AS current, previous_refresh_token_enc AS previous FROM integration_connections WHERE id = ${connectionId}`);
    const open = (value: string, column: 'refresh_token_enc' | 'previous_refresh_token_enc') =>
      platform.crypto.decrypt(value, { table: 'integration_connections', column, rowId: connectionId });
    return { current: open(row.current, 'refresh_token_enc'), previous: row.previous === null ? null : open(row.previous, 'previous_refresh_token_enc') };
  };

  it('refreshes every 24 h token before it expires, keeps its one refresh token without asking for rotation, and syncs on schedule', { timeout: 5 * 60_000 }, async () => {
    await clock.catchUp();
    const user = await platform.signUp('sixty.days@example.com');
    const propertyId = await createProperty(platform, user.userId, 'Olive Grove Villa');
    const host = airbnb.createHost(['Olive Grove Villa']);
    const connection = await connectAirbnb(platform, user.sessionToken);
    await waitForConnectionState(platform, connection.workflowId, (state) => state.status === 'active' && (state.sync?.runCount ?? 0) >= 1);
    const handle = platform.client.workflow.getHandle(connection.workflowId);
    const firstRunId = (await handle.describe()).runId;
    const startedAt = clock.now();

    // A guest books every ten days; each booking must arrive with the next scheduled sync.
    const booked: string[] = [];
    for (let day = 1; day <= 60; day++) {
      await clock.advance(DAY);
      if (day % 10 === 5) {
        const checkIn = new Date(clock.now() + 30 * DAY).toISOString().slice(0, 10);
        const checkOut = new Date(clock.now() + 33 * DAY).toISOString().slice(0, 10);
        booked.push(airbnb.createReservation({ listingId: host.listings[0]!.id, startDate: checkIn, endDate: checkOut, guestFirstName: `Guest ${day}` }).confirmation_code);
      }
    }
    expect(clock.now() - startedAt).toBeGreaterThanOrEqual(60 * DAY);

    const tokenCalls = airbnb.calls.filter((call): call is FakeAirbnbOAuthCall => call.endpoint === 'token');
    expect(tokenCalls[0]).toMatchObject({ grant: 'code', status: 200 });
    const refreshes = tokenCalls.slice(1);
    expect(refreshes.length).toBeGreaterThanOrEqual(60);
    // No refresh asked for rotation (a rotation whose answer is lost could spend our only token), and every one worked.
    expect(refreshes.filter((call) => call.grant !== 'refresh' || call.rotated !== false || call.status !== 200)).toEqual([]);
    for (let index = 1; index < tokenCalls.length; index++) {
      const sincePrevious = tokenCalls[index]!.at - tokenCalls[index - 1]!.at;
      expect(sincePrevious).toBeLessThan(TOKEN_LIFETIME_MS); // before the previous token expired
      expect(sincePrevious).toBeGreaterThanOrEqual(TOKEN_LIFETIME_MS - (300 + 60) * 1000 - 1000); // and not needlessly early
    }
    const stored = await storedRefreshTokens(connection.connectionId);
    expect(airbnb.liveRefreshTokens()).toEqual([stored.current]);
    expect(stored.previous).toBeNull();

    const apiCalls = airbnb.calls.filter((call) => call.endpoint === 'reservations' || call.endpoint === 'subscriptions' || call.endpoint === 'listings');
    expect(apiCalls.filter((call) => call.status >= 400 || ('accessTokenExpired' in call && call.accessTokenExpired))).toEqual([]);

    const runs = await syncRuns(connection.connectionId);
    expect(runs.every((run) => run.outcome === 'succeeded')).toBe(true);
    expect(runs.length).toBeGreaterThanOrEqual((60 * DAY) / SYNC_INTERVAL_MS);
    for (let index = 1; index < runs.length; index++) {
      const gap = runs[index]!.startedAt - runs[index - 1]!.startedAt;
      expect(runs[index]!.reason).toBe('scheduled');
      expect(gap).toBeGreaterThanOrEqual(SYNC_INTERVAL_MS - MINUTE);
      expect(gap).toBeLessThanOrEqual(SYNC_INTERVAL_MS + MINUTE);
    }
    const reservations = await storedAirbnbReservations(platform, connection.connectionId);
    expect(reservations.map((row) => row.externalId).sort()).toEqual([...booked].sort());
    expect(reservations.every((row) => row.propertyId === propertyId && row.status === 'confirmed')).toBe(true);

    expect((await handle.describe()).runId).not.toBe(firstRunId); // continue-as-new kept the history short
    expect((await handle.fetchHistory()).events!.length).toBeLessThan(2000);

    await clock.catchUp();
    expect((await apiRequest(platform, user.sessionToken, 'POST', '/api/v1/integrations/airbnb/disconnect')).status).toBe(202);
    expect(await handle.result()).toEqual({ status: 'disconnected', revocation: 'revoked' });
    expect(airbnb.liveRefreshTokens()).toEqual([]);
    expect(airbnb.liveSubscriptions()).toEqual([]);
  });
});
