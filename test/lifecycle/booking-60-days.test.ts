import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';
import { scanPlatformForSecrets } from '../helpers/secret-scan';
import { startFakeBooking, type FakeBooking } from '../../fakes/booking';
import { startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { BOOKING_TEST_ACCOUNT, bookingEnvironment, connectBooking, storedReservations } from '../helpers/booking';

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TOKEN_LIFETIME_MS = HOUR;
/** A long poll interval keeps 60 days cheap; the schedule is what is under test, not its length. */
const POLL_INTERVAL_MS = HOUR;
const HOTEL = '7654321';

/** A seeded generator, so a failing run can be replayed with the same "random" bookings. */
function seededRandom(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const isoDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/**
 * A Booking.com connection over 60 simulated days on Temporal's time-skipping server: the fake and the
 * activities share one simulated clock, guests book, change and cancel at random times, and the
 * workflow alone keeps the JWT fresh and polls the queues.
 */
describe('Booking.com connection over 60 days (time-skipping)', () => {
  let temporal: TestWorkflowEnvironment;
  let booking: FakeBooking;
  let platform: TestPlatform;
  let clock: SimulatedClock;

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    clock = await SimulatedClock.of(temporal);
    booking = await startFakeBooking({ ...BOOKING_TEST_ACCOUNT, clock: clock.now });
    platform = await startTestPlatform({
      temporal,
      clock: clock.activityClock,
      environment: bookingEnvironment(booking, { pollIntervalSeconds: POLL_INTERVAL_MS / 1000, ackPauseMs: 0 }),
    });
  });

  afterAll(async () => {
    // Before the database goes: no token, code or secret the fake issued is left in plaintext anywhere.
    const scan = platform && (await scanPlatformForSecrets(platform, { extraSecrets: booking.issuedSecrets() }));
    await platform?.close();
    await booking?.close();
    await temporal?.teardown();
    expect(scan?.hits).toEqual([]);
    expect(scan?.historiesScanned).toBeGreaterThan(0);
  });

  it('refreshes the JWT before every expiry within the hourly limit, polls on time, and stores and acknowledges every booking', { timeout: 15 * 60_000 }, async () => {
    await clock.catchUp();
    const { sessionToken } = await platform.signUp('sixty.days@example.com');
    const connected = await connectBooking(platform, sessionToken, { ...BOOKING_TEST_ACCOUNT, hotelIds: [HOTEL] });
    expect(connected.status).toBe(202);
    const { connectionId, workflowId } = connected.body as { connectionId: string; workflowId: string };
    await waitForConnectionState(platform, workflowId, (state) => state.status === 'active');
    const startedAt = clock.now();

    const random = seededRandom(20_310_601);
    const expected = new Map<string, { status: string; checkOut: string; queuedAt: number }>();
    const eventTimes = Array.from({ length: 40 }, () => startedAt + random() * 58 * DAY).sort((a, b) => a - b);
    for (const at of eventTimes) {
      await clock.advance(Math.max(1, at - clock.now()));
      const open = [...expected].filter(([, reservation]) => reservation.status === 'confirmed');
      const roll = random();
      if (open.length > 0 && roll < 0.3) {
        const [id, reservation] = open[Math.floor(random() * open.length)]!;
        if (roll < 0.1) {
          booking.queueCancellation(id);
          expected.set(id, { ...reservation, status: 'cancelled', queuedAt: clock.now() });
        } else {
          const checkOut = isoDay(Date.parse(reservation.checkOut) + DAY);
          booking.queueModification(id, { checkOut });
          expected.set(id, { ...reservation, checkOut, queuedAt: clock.now() });
        }
      } else {
        const checkIn = clock.now() + Math.ceil(random() * 90) * DAY;
        const checkOut = isoDay(checkIn + Math.ceil(random() * 7) * DAY);
        const id = booking.queueReservation({ hotelId: HOTEL, guest: { givenName: 'Guest', surname: `No${expected.size}` }, checkIn: isoDay(checkIn), checkOut });
        expected.set(id, { status: 'confirmed', checkOut, queuedAt: clock.now() });
      }
    }
    await clock.advance(startedAt + 60 * DAY - clock.now());
    expect(clock.now() - startedAt).toBeGreaterThanOrEqual(60 * DAY);

    // Tokens: every one issued before the previous expired, never needlessly early, never over the limit.
    const tokenCalls = booking.calls.filter((call) => call.endpoint === 'token');
    expect(tokenCalls.every((call) => call.status === 200)).toBe(true);
    expect(tokenCalls.length).toBeGreaterThan((60 * DAY) / TOKEN_LIFETIME_MS);
    const refreshes = tokenCalls.slice(1); // the first checked the credentials at connect
    for (let index = 1; index < refreshes.length; index++) {
      const sincePrevious = refreshes[index]!.at - refreshes[index - 1]!.at;
      expect(sincePrevious).toBeLessThan(TOKEN_LIFETIME_MS);
      expect(sincePrevious).toBeGreaterThanOrEqual(TOKEN_LIFETIME_MS - (300 + 60) * 1000 - 1000);
    }
    for (const call of tokenCalls) {
      expect(tokenCalls.filter((other) => other.at > call.at - HOUR && other.at <= call.at).length).toBeLessThanOrEqual(30);
    }
    // No OTA request ever carried an expired or refused token.
    expect(booking.calls.filter((call) => call.endpoint !== 'token' && call.status !== 200)).toEqual([]);

    // Polls: one sync an interval, every one of them successful.
    const runs = await platform.db.any(sql.type(z.object({ startedAt: z.number(), outcome: z.string().nullable() }))`
      SELECT started_at AS "startedAt", outcome FROM sync_runs WHERE connection_id = ${connectionId} ORDER BY started_at`);
    expect(runs.every((run) => run.outcome === 'succeeded')).toBe(true);
    expect(runs.length).toBeGreaterThanOrEqual((60 * DAY) / POLL_INTERVAL_MS - 2);
    for (let index = 1; index < runs.length; index++) {
      const gap = runs[index]!.startedAt - runs[index - 1]!.startedAt;
      expect(gap).toBeGreaterThanOrEqual(POLL_INTERVAL_MS - 1000);
      expect(gap).toBeLessThanOrEqual(POLL_INTERVAL_MS + 2 * MINUTE);
    }

    // Bookings: each stored in its latest state and acknowledged by the next poll after it was queued.
    expect(booking.pending('reservations')).toEqual([]);
    expect(booking.pending('modifications')).toEqual([]);
    const acknowledgements = booking.acknowledged();
    for (const [id, reservation] of expected) {
      expect(await storedReservations(platform, id)).toMatchObject([{ status: reservation.status, checkOut: reservation.checkOut, externalListingId: HOTEL }]);
      const acknowledgedAt = Math.max(...acknowledgements.filter((ack) => ack.reservationId === id).map((ack) => ack.at));
      expect(acknowledgedAt - reservation.queuedAt).toBeLessThanOrEqual(POLL_INTERVAL_MS + 2 * MINUTE);
    }

    const handle = platform.client.workflow.getHandle(workflowId);
    expect((await handle.fetchHistory()).events!.length).toBeLessThan(2000);
    await fetch(`${platform.apiUrl}/api/v1/integrations/booking-com/disconnect`, { method: 'POST', headers: { authorization: `Bearer ${sessionToken}` } });
    expect(await handle.result()).toEqual({ status: 'disconnected', revocation: 'not_supported' });
  });
});
