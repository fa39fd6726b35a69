import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { listCalendarEvents } from '../../db/queries/calendar-events';
import { GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { connectGoogleAccount, liveChannelsOf } from '../helpers/google-calendar';

const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;
/**
 * Hourly refreshes over weeks are the subject of google-calendar-lifecycle.test.ts; four-hour tokens keep
 * sixty days affordable while every refresh must still come before expiry.
 */
const TOKEN_LIFETIME_MS = 4 * HOUR;
const CHANNEL_TTL_MS = 7 * DAY;
/** Longer than the default six hours, so sixty days stay cheap: one scheduled sync a day. */
const SYNC_INTERVAL_MS = DAY;

/**
 * Sixty simulated days of one Google Calendar connection on the time-skipping server: token
 * refreshes, a push channel replaced every week before it expires, a daily scheduled sync, and
 * notifications through whichever channel is live at the time. The fake Google and the activities
 * share one simulated clock.
 */
describe('Google Calendar over 60 days (time-skipping)', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  let clock: SimulatedClock;

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    clock = await SimulatedClock.of(temporal);
    google = await startFakeGoogle({ ...GOOGLE_TEST_CLIENT, clock: clock.now, accessTokenLifetimeSeconds: TOKEN_LIFETIME_MS / 1000 });
    platform = await startTestPlatform({
      temporal,
      google,
      clock: clock.activityClock,
      environment: { GOOGLE_CALENDAR_SYNC_INTERVAL_SECONDS: String(SYNC_INTERVAL_MS / 1000), GOOGLE_CHANNEL_TTL_SECONDS: String(CHANNEL_TTL_MS / 1000) },
    });
  });

  afterAll(async () => {
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  it('refreshes, renews its channel and syncs on time for 60 days, without a gap', { timeout: 5 * 60_000 }, async () => {
    const account = '400000000000000000001';
    const calendar = google.calendar(account);
    await clock.catchUp();
    const connection = await connectGoogleAccount(platform, google, 'sixty.days@example.com', account);
    await waitForConnectionState(platform, connection.workflowId, (state) => (state.sync?.runCount ?? 0) >= 1);
    const startedAt = clock.now();

    for (let day = 1; day <= 60; day++) {
      await clock.advance(DAY);
      if (day % 10 === 0) {
        // Something changes, and Google says so through the channel that is live today.
        calendar.add({ summary: `day ${day}`, start: new Date(clock.now() + 30 * DAY).toISOString().slice(0, 10), end: new Date(clock.now() + 31 * DAY).toISOString().slice(0, 10) });
        const [channel, ...others] = liveChannelsOf(google, account);
        expect(others).toEqual([]);
        expect((await google.notify(channel!.id)).map((delivery) => delivery.status).every((status) => status === 200)).toBe(true);
      }
    }
    await clock.advance(HOUR);
    expect(clock.now() - startedAt).toBeGreaterThanOrEqual(60 * DAY);

    // Every refresh before the previous token expired; no Google call ever failed.
    const tokenCalls = google.calls.filter((call) => call.endpoint === 'token');
    expect(tokenCalls.every((call) => call.status === 200)).toBe(true);
    for (let index = 1; index < tokenCalls.length; index++) expect(tokenCalls[index]!.at - tokenCalls[index - 1]!.at).toBeLessThan(TOKEN_LIFETIME_MS);
    expect(tokenCalls.length).toBeGreaterThan((60 * DAY) / TOKEN_LIFETIME_MS);
    expect(google.calls.filter((call) => call.endpoint !== 'token' && call.endpoint !== 'authorize').every((call) => call.status === 200 || call.status === 204)).toBe(true);

    // A new channel opened before the previous one expired, the previous one stopped then: always exactly one live.
    const channels = google.channels().filter((channel) => channel.account === account).sort((a, b) => a.createdAt - b.createdAt);
    expect(channels.length).toBeGreaterThanOrEqual(Math.floor((60 * DAY) / CHANNEL_TTL_MS) + 1);
    expect(channels.length).toBeLessThanOrEqual(Math.ceil((60 * DAY) / (CHANNEL_TTL_MS - DAY)) + 1);
    for (let index = 1; index < channels.length; index++) {
      const [previous, next] = [channels[index - 1]!, channels[index]!];
      expect(next.createdAt).toBeLessThan(previous.expiration);
      expect(previous.stoppedAt).toBeGreaterThanOrEqual(next.createdAt);
      expect(previous.stoppedAt).toBeLessThan(previous.expiration);
    }
    expect(liveChannelsOf(google, account)).toHaveLength(1);

    // A sync at least once a day, every one of them successful; the notified changes all arrived.
    const runs = await platform.db.any(sql.type(z.object({ reason: z.string(), startedAt: z.number(), outcome: z.string().nullable() }))`
      SELECT reason, started_at AS "startedAt", outcome FROM sync_runs WHERE connection_id = ${connection.connectionId} ORDER BY started_at, id`);
    expect(runs.every((run) => run.outcome === 'succeeded')).toBe(true);
    const scheduled = runs.filter((run) => run.reason === 'scheduled');
    expect(scheduled.length).toBeGreaterThanOrEqual(Math.floor((60 * DAY) / SYNC_INTERVAL_MS) - 6);
    expect(runs.filter((run) => run.reason === 'webhook:changed')).toHaveLength(6);
    for (let index = 1; index < runs.length; index++) expect(runs[index]!.startedAt - runs[index - 1]!.startedAt).toBeLessThanOrEqual(SYNC_INTERVAL_MS + 1000);
    expect(clock.now() - runs.at(-1)!.startedAt).toBeLessThanOrEqual(SYNC_INTERVAL_MS + 1000);
    expect((await listCalendarEvents(platform.db, connection.connectionId)).map((event) => event.title).sort()).toEqual(
      ['day 10', 'day 20', 'day 30', 'day 40', 'day 50', 'day 60'].sort(),
    );

    await connection.handle.signal('disconnect', { requestedBy: { type: 'system' } });
    expect(await connection.handle.result()).toEqual({ status: 'disconnected', revocation: 'revoked' });
    expect(liveChannelsOf(google, account)).toEqual([]);
  });
});
