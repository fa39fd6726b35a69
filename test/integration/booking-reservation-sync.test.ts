import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { startFakeBooking, type FakeBooking } from '../../fakes/booking';
import { startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { BOOKING_TEST_ACCOUNT, bookingEnvironment, connectBooking, storedReservations } from '../helpers/booking';
import { eventually } from '../helpers/eventually';
import { historyPayloadTexts } from '../helpers/history';
import type { ConnectionStatusResponse } from '../../api/plugins/connection-status-schema';

const HOTEL = '1234567';

/**
 * Booking.com end to end on a real Temporal dev server, real Postgres and the fake Booking.com over
 * HTTP: machine-account credentials checked before they are stored, the reservation queues polled
 * every second, and nothing acknowledged before it is in the database.
 */
describe('Booking.com reservation sync (dev server)', () => {
  let temporal: TestWorkflowEnvironment;
  let booking: FakeBooking;
  let platform: TestPlatform;
  let user: { userId: string; sessionToken: string };
  let connection: { connectionId: string; workflowId: string };

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    booking = await startFakeBooking(BOOKING_TEST_ACCOUNT);
    platform = await startTestPlatform({ temporal, environment: bookingEnvironment(booking, { pollIntervalSeconds: 1, ackPauseMs: 20 }) });
  });

  afterAll(async () => {
    await platform?.close();
    await booking?.close();
    await temporal?.teardown();
  });

  const connectionRows = (userId: string) =>
    platform.db.any(sql.type(z.object({ id: z.string(), status: z.string(), refreshTokenEnc: z.string().nullable(), accessTokenEnc: z.string().nullable() }))`
      SELECT id, status, refresh_token_enc AS "refreshTokenEnc", access_token_enc AS "accessTokenEnc" FROM integration_connections WHERE user_id = ${userId}`);
  const auditRows = (where: { userId?: string; connectionId?: string }) =>
    platform.db.any(sql.type(z.object({ action: z.string(), outcome: z.string(), details: z.record(z.unknown()) }))`
      SELECT action, outcome, details FROM audit_log
      WHERE ${where.connectionId ? sql.fragment`connection_id = ${where.connectionId}` : sql.fragment`user_id = ${where.userId!}`} ORDER BY id`);
  const acknowledged = (reservationId: string, queue: 'reservations' | 'modifications') =>
    booking.acknowledged().some((ack) => ack.reservationId === reservationId && ack.queue === queue);
  const failedSyncRuns = () =>
    platform.db.any(sql.type(z.object({ errorKind: z.string().nullable(), errorMessage: z.string().nullable() }))`
      SELECT error_kind AS "errorKind", error_message AS "errorMessage" FROM sync_runs WHERE connection_id = ${connection.connectionId} AND outcome = 'failed' ORDER BY id`);
  /** The run in progress at `at` (ms): the latest one started by then. */
  const syncRunAt = (at: number) =>
    platform.db.maybeOne(sql.type(z.object({ id: z.coerce.number(), finishedAt: z.number().nullable(), outcome: z.string().nullable() }))`
      SELECT id, finished_at AS "finishedAt", outcome FROM sync_runs
      WHERE connection_id = ${connection.connectionId} AND started_at <= ${sql.timestamp(new Date(at))} ORDER BY id DESC LIMIT 1`);
  const finishedRunAt = (at: number, what: string) =>
    eventually(async () => {
      const run = await syncRunAt(at);
      return run?.finishedAt != null && run;
    }, 20_000, `${what} finished`);
  const connectionStatus = async (sessionToken: string): Promise<ConnectionStatusResponse> => {
    const response = await fetch(`${platform.apiUrl}/api/v1/integrations/booking-com/status`, { headers: { authorization: `Bearer ${sessionToken}` } });
    expect(response.status).toBe(200);
    return (await response.json()) as ConnectionStatusResponse;
  };
  const guest = (surname: string) => ({ givenName: 'Test', surname });

  it('refuses credentials Booking.com rejects with a clear error, and stores nothing', async () => {
    const { userId, sessionToken } = await platform.signUp('wrong.secret@example.com');

    const refused = await connectBooking(platform, sessionToken, { ...BOOKING_TEST_ACCOUNT, clientSecret: 'not-the-secret' });
    expect(refused).toEqual({ status: 422, body: { error: 'invalid_credentials', message: expect.stringContaining('refused') } });
    booking.switches.failNext(1, 503, 'token');
    const unavailable = await connectBooking(platform, sessionToken);
    expect(unavailable).toMatchObject({ status: 503, body: { error: 'provider_unavailable' } });
    const malformed = await connectBooking(platform, sessionToken, { clientId: BOOKING_TEST_ACCOUNT.clientId } as typeof BOOKING_TEST_ACCOUNT);
    expect(malformed).toMatchObject({ status: 400, body: { error: 'invalid_request' } });

    expect(await connectionRows(userId)).toEqual([]);
    expect((await auditRows({ userId })).filter((row) => row.action !== 'UserLogin')).toEqual([
      { action: 'IntegrationConnect', outcome: 'failure', details: { reason: 'invalid_grant', credentials: 'machine-account' } },
      { action: 'IntegrationConnect', outcome: 'failure', details: { reason: 'transient', credentials: 'machine-account' } },
    ]);
  });

  it('connects with good credentials, stores them encrypted and syncs a booking, its change and its cancellation', async () => {
    user = await platform.signUp('hotelier@example.com');
    const property = await platform.db.oneFirst(sql.type(z.object({ id: z.string() }))`
      INSERT INTO properties (owner_user_id, name) VALUES (${user.userId}, 'Seaside Hotel') RETURNING id`);

    const connected = await connectBooking(platform, user.sessionToken, { ...BOOKING_TEST_ACCOUNT, hotelIds: [HOTEL] });
    expect(connected.status).toBe(202);
    connection = { connectionId: connected.body.connectionId!, workflowId: connected.body.workflowId! };
    expect(connection.workflowId).toBe(`connection:booking-com:${connection.connectionId}`);
    const state = await waitForConnectionState(platform, connection.workflowId, (s) => s.status === 'active' && s.syncIntervalSeconds === 1);
    expect(state.accessTokenExpiresAt).toBeGreaterThan(Date.now() + 55 * 60 * 1000);

    const [row] = await connectionRows(user.userId);
    const credentials = platform.crypto.decrypt(row!.refreshTokenEnc!, { table: 'integration_connections', column: 'refresh_token_enc', rowId: connection.connectionId });
    expect(JSON.parse(credentials)).toEqual(BOOKING_TEST_ACCOUNT);
    for (const secret of booking.issuedSecrets()) {
      for (const sealed of [row!.refreshTokenEnc!, row!.accessTokenEnc!]) expect(sealed).not.toContain(secret);
    }
    // The user maps the hotel to their property, as the mapping review would.
    await platform.db.query(sql.unsafe`
      UPDATE listing_mappings SET property_id = ${property}, mapped_by = 'user' WHERE connection_id = ${connection.connectionId} AND external_listing_id = ${HOTEL}`);

    const reservationId = booking.queueReservation({ hotelId: HOTEL, guest: { givenName: 'Ada', surname: 'Lovelace' }, checkIn: '2031-05-01', checkOut: '2031-05-04' });
    await eventually(() => acknowledged(reservationId, 'reservations'), 20_000, 'new reservation acknowledged');
    expect(await storedReservations(platform, reservationId)).toEqual([
      { externalId: reservationId, externalListingId: HOTEL, propertyId: property, status: 'confirmed', guestName: 'Ada Lovelace', checkIn: '2031-05-01', checkOut: '2031-05-04' },
    ]);

    booking.queueModification(reservationId, { checkOut: '2031-05-06' });
    await eventually(() => acknowledged(reservationId, 'modifications'), 20_000, 'modification acknowledged');
    expect(await storedReservations(platform, reservationId)).toMatchObject([{ status: 'confirmed', checkIn: '2031-05-01', checkOut: '2031-05-06' }]);

    const acknowledgedBefore = booking.acknowledged().length;
    booking.queueCancellation(reservationId);
    const cancellationAck = await eventually(() => booking.acknowledged()[acknowledgedBefore], 20_000, 'cancellation acknowledged');
    expect(await storedReservations(platform, reservationId)).toMatchObject([{ status: 'cancelled', checkOut: '2031-05-06' }]);
    expect(booking.pending('reservations')).toEqual([]);
    expect(booking.pending('modifications')).toEqual([]);

    // The acknowledgement is audited after Booking.com has taken it: once its run has finished.
    const cancellationRun = await finishedRunAt(cancellationAck.at, 'the run that acknowledged the cancellation');
    expect(cancellationRun.outcome).toBe('succeeded');
    const acknowledgements = (await auditRows({ connectionId: connection.connectionId })).filter((entry) => entry.action === 'ReservationAcknowledge');
    expect(acknowledgements.map((entry) => entry.details)).toEqual([
      { queue: 'reservations', count: 1, reservationIds: [reservationId] },
      { queue: 'modifications', count: 1, reservationIds: [reservationId] },
      { queue: 'modifications', count: 1, reservationIds: [reservationId] },
    ]);
    // Runs follow each other every second, so the status is read once it reports a finished run no
    // older than the one that acknowledged the cancellation, rather than whichever run is current.
    const status = await eventually(async () => {
      const body = await connectionStatus(user.sessionToken);
      const sync = body.connection?.sync;
      return sync?.lastOutcome != null && Date.parse(sync.lastRunAt!) >= cancellationRun.finishedAt! && body;
    }, 20_000, 'the status reports a finished run since the cancellation');
    expect(status).toMatchObject({
      provider: 'booking-com',
      configured: true,
      connected: true,
      upstreamRevocation: { supported: false },
      connection: { id: connection.connectionId, status: 'active', sync: { lastOutcome: 'succeeded' }, workflow: { running: true, status: 'active' } },
    });

    // A run in progress is reported as such and does not hide the last finished run's outcome.
    booking.switches.delayMs = 2000;
    try {
      const duringRun = await eventually(async () => {
        const sync = (await connectionStatus(user.sessionToken)).connection?.sync;
        return sync?.runningSince ? sync : undefined;
      }, 20_000, 'the status reports a run in progress');
      expect(duringRun).toMatchObject({ lastOutcome: 'succeeded', lastRunAt: expect.any(String), runningSince: expect.any(String) });
      expect(Date.parse(duringRun.runningSince!)).toBeGreaterThanOrEqual(Date.parse(duringRun.lastRunAt!));
    } finally {
      booking.switches.delayMs = 0;
    }
  });

  it('acknowledges only the reservations it stored; the rest stay queued until they can be stored', async () => {
    // The database refuses one guest's reservation, as a failing write would.
    await platform.db.query(sql.unsafe`
      CREATE FUNCTION refuse_test_guest() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.guest_name = 'Test Refused' THEN RAISE EXCEPTION 'write refused by the test'; END IF;
        RETURN NEW;
      END $$`);
    await platform.db.query(sql.unsafe`CREATE TRIGGER refuse_test_guest BEFORE INSERT OR UPDATE ON reservations FOR EACH ROW EXECUTE FUNCTION refuse_test_guest()`);
    const stays = { hotelId: HOTEL, checkIn: '2031-06-01', checkOut: '2031-06-03' };
    const first = booking.queueReservation({ ...stays, guest: guest('First') });
    const refused = booking.queueReservation({ ...stays, guest: guest('Refused') });
    const after = booking.queueReservation({ ...stays, guest: guest('After') });

    await eventually(() => acknowledged(first, 'reservations'), 20_000, 'first reservation acknowledged');
    await eventually(async () => (await failedSyncRuns()).some((run) => run.errorMessage?.includes('write refused by the test')), 20_000, 'failed sync recorded');
    expect(await storedReservations(platform, first)).toHaveLength(1);
    for (const unstored of [refused, after]) {
      expect(acknowledged(unstored, 'reservations')).toBe(false);
      expect(await storedReservations(platform, unstored)).toEqual([]);
    }
    expect(booking.pending('reservations')).toEqual([refused, after]);

    await platform.db.query(sql.unsafe`DROP TRIGGER refuse_test_guest ON reservations`);
    await eventually(() => acknowledged(refused, 'reservations') && acknowledged(after, 'reservations'), 40_000, 'the rest acknowledged once stored');
    expect(await storedReservations(platform, refused)).toMatchObject([{ guestName: 'Test Refused', status: 'confirmed' }]);
    expect(await storedReservations(platform, after)).toHaveLength(1);
  });

  it('treats malformed XML as an error that loses nothing: the next poll stores and acknowledges the reservation', async () => {
    const failuresBefore = (await failedSyncRuns()).length;
    const callsBefore = booking.calls.length;
    const reservationId = booking.queueReservation({ hotelId: HOTEL, guest: guest('Malformed'), checkIn: '2031-07-01', checkOut: '2031-07-02' });
    booking.switches.malformedXml = true;

    await eventually(() => acknowledged(reservationId, 'reservations'), 20_000, 'reservation acknowledged after the malformed answer');
    const calls = booking.calls.slice(callsBefore);
    const brokenPoll = calls.findIndex((call) => call.malformed);
    expect(brokenPoll).toBeGreaterThanOrEqual(0);
    expect(calls[brokenPoll]!.reservationIds).toEqual([reservationId]);
    // Nothing was acknowledged on the strength of the broken answer: the next call is another poll.
    expect(calls[brokenPoll + 1]).toMatchObject({ endpoint: 'poll' });
    const failures = (await failedSyncRuns()).slice(failuresBefore);
    expect(failures).toEqual([{ errorKind: 'ProviderRejected', errorMessage: expect.stringContaining('malformed XML') }]);
    expect(await storedReservations(platform, reservationId)).toMatchObject([{ guestName: 'Test Malformed', status: 'confirmed' }]);
  });

  it('stores a reservation delivered again after a lost acknowledgement only once', async () => {
    const callsBefore = booking.calls.length;
    booking.switches.failNext(1, 503, 'acknowledge');
    const reservationId = booking.queueReservation({ hotelId: HOTEL, guest: guest('Redelivered'), checkIn: '2031-08-01', checkOut: '2031-08-05' });

    await eventually(() => acknowledged(reservationId, 'reservations'), 40_000, 'reservation acknowledged after the retry');
    const calls = booking.calls.slice(callsBefore);
    expect(calls.filter((call) => call.endpoint === 'poll' && call.reservationIds?.includes(reservationId)).length).toBeGreaterThanOrEqual(2);
    expect(calls.filter((call) => call.endpoint === 'acknowledge').map((call) => call.status)).toEqual([503, 200]);
    expect(await storedReservations(platform, reservationId)).toHaveLength(1);
  });

  it('ends a run with a protocol error when the queue keeps delivering what it acknowledged, instead of polling on', async () => {
    const failuresBefore = (await failedSyncRuns()).length;
    booking.switches.ignoreAcknowledgements = true;
    let reservationId: string;
    try {
      reservationId = booking.queueReservation({ hotelId: HOTEL, guest: guest('Endless'), checkIn: '2031-09-01', checkOut: '2031-09-02' });
      await eventually(async () => (await failedSyncRuns()).length > failuresBefore, 30_000, 'failed sync recorded');
    } finally {
      booking.switches.ignoreAcknowledgements = false;
    }
    expect((await failedSyncRuns())[failuresBefore]).toEqual({ errorKind: 'ProviderRejected', errorMessage: expect.stringContaining('after 20 acknowledged batches') });
    await eventually(() => acknowledged(reservationId, 'reservations'), 20_000, 'reservation acknowledged once acknowledgements take');
    expect(await storedReservations(platform, reservationId)).toHaveLength(1);
  });

  it('skips a reservation it cannot read, leaving it queued for Booking.com to email, and stores and acknowledges the rest', async () => {
    const failuresBefore = (await failedSyncRuns()).length;
    const stays = { hotelId: HOTEL, checkIn: '2031-10-01', checkOut: '2031-10-03' };
    const before = booking.queueReservation({ ...stays, guest: guest('Readable') });
    const damaged = booking.queueReservation({ ...stays, guest: guest('Damaged'), incomplete: true });
    const after = booking.queueReservation({ ...stays, guest: guest('Also Readable') });

    const acknowledgement = await eventually(() => booking.acknowledged().find((ack) => ack.reservationId === after && ack.queue === 'reservations'), 20_000, 'readable reservations acknowledged');
    expect(acknowledged(before, 'reservations')).toBe(true);
    await finishedRunAt(acknowledgement.at, 'the run that acknowledged them');
    expect(await storedReservations(platform, before)).toHaveLength(1);
    expect(await storedReservations(platform, after)).toHaveLength(1);
    expect(await storedReservations(platform, damaged)).toEqual([]);
    expect(acknowledged(damaged, 'reservations')).toBe(false);
    const acknowledgements = (await auditRows({ connectionId: connection.connectionId })).filter((entry) => entry.action === 'ReservationAcknowledge');
    expect(acknowledgements.at(-1)?.details).toEqual({ queue: 'reservations', count: 2, reservationIds: [before, after], skipped: 1 });

    // Later polls deliver it again and skip it again, without failing the runs.
    const callsBefore = booking.calls.length;
    const secondPoll = await eventually(() => booking.calls.slice(callsBefore).filter((call) => call.endpoint === 'poll' && call.reservationIds?.includes(damaged))[1], 20_000, 'damaged reservation polled again');
    await finishedRunAt(secondPoll.at, 'the run that polled it again');
    expect(booking.pending('reservations')).toEqual([damaged]);
    expect((await failedSyncRuns()).length).toBe(failuresBefore);
  });

  it('disconnects: credentials and tokens wiped, nothing revoked upstream (there is no way to), all audited, no secret in history', async () => {
    const disconnect = await fetch(`${platform.apiUrl}/api/v1/integrations/booking-com/disconnect`, {
      method: 'POST',
      headers: { authorization: `Bearer ${user.sessionToken}` },
    });
    expect(disconnect.status).toBe(202);
    const handle = platform.client.workflow.getHandle(connection.workflowId);
    expect(await handle.result()).toEqual({ status: 'disconnected', revocation: 'not_supported' });

    expect(await connectionRows(user.userId)).toEqual([{ id: connection.connectionId, status: 'disconnected', refreshTokenEnc: null, accessTokenEnc: null }]);
    const actions = (await auditRows({ connectionId: connection.connectionId })).filter((entry) => entry.action !== 'ReservationAcknowledge');
    expect(actions).toEqual([
      { action: 'IntegrationConnectStarted', outcome: 'success', details: { credentials: 'machine-account', hotels: 1 } },
      { action: 'IntegrationConnect', outcome: 'success', details: { credentials: 'machine-account', reauthorization: false } },
      { action: 'OAuthRevoke', outcome: 'success', details: { revocation: 'not_supported', revokedTokenKind: 'refresh' } },
      { action: 'IntegrationDisconnect', outcome: 'success', details: { revocation: 'not_supported' } },
    ]);
    const status = await fetch(`${platform.apiUrl}/api/v1/integrations/booking-com/status`, { headers: { authorization: `Bearer ${user.sessionToken}` } });
    expect(await status.json()).toMatchObject({ connected: false, connection: { status: 'disconnected', revocation: 'not_supported', workflow: { running: false } } });
    const again = await fetch(`${platform.apiUrl}/api/v1/integrations/booking-com/disconnect`, { method: 'POST', headers: { authorization: `Bearer ${user.sessionToken}` } });
    expect(again.status).toBe(404);

    const texts = await historyPayloadTexts(handle);
    expect(texts.join('\n')).toContain(connection.connectionId);
    for (const secret of [...booking.issuedSecrets(), user.sessionToken]) {
      for (const text of texts) expect(text).not.toContain(secret);
    }
  });
});
