import { afterEach, describe, expect, it } from 'vitest';
import { startFakeBooking, type FakeBooking } from '../../fakes/booking';
import { BookingAdapter, serializeBookingCredentials } from '../../platform/providers/booking';
import { BookingOtaClient } from '../../platform/providers/booking-ota';
import { ProviderError } from '../../platform/providers/provider-error';
import { BOOKING_TEST_ACCOUNT } from '../helpers/booking';

const HOUR = 3600 * 1000;

/** The fake Booking.com as the real adapter and OTA client see it, over HTTP. */
describe('fake Booking.com', () => {
  let booking: FakeBooking;
  let now = Date.parse('2031-01-01T00:00:00Z');

  afterEach(async () => {
    await booking?.close();
  });

  async function start(options: Partial<Parameters<typeof startFakeBooking>[0]> = {}) {
    booking = await startFakeBooking({ ...BOOKING_TEST_ACCOUNT, clock: () => now, ...options });
    const adapter = new BookingAdapter({ authUrl: booking.authUrl, xmlUrl: booking.xmlUrl, pollIntervalSeconds: 20, ackPauseMs: 0, requestTimeoutMs: 15_000 });
    return { adapter, ota: new BookingOtaClient(booking.xmlUrl, 15_000), credentials: serializeBookingCredentials(BOOKING_TEST_ACCOUNT) };
  }

  const failureOf = (promise: Promise<unknown>) => promise.then(() => undefined, (error: unknown) => error as ProviderError);

  it('issues 1-hour JWTs whose expiry and machine account the adapter reads, at most 30 an hour', async () => {
    const { adapter, credentials } = await start();
    const tokens = await adapter.refresh(credentials);
    expect(tokens).toMatchObject({ refreshToken: undefined, expiresInSeconds: 3600, expiresAt: new Date(now + HOUR), accountId: expect.stringMatching(/^\d+$/) });
    for (let issued = 1; issued < 30; issued++) await adapter.refresh(credentials);
    expect(await failureOf(adapter.refresh(credentials))).toMatchObject({ kind: 'transient', details: { status: 429 } });
    now += HOUR + 1;
    await expect(adapter.refresh(credentials)).resolves.toMatchObject({ accessToken: expect.any(String) });
  });

  it('refuses wrong or withdrawn credentials as invalid_grant and scripted failures as transient', async () => {
    const { adapter, credentials } = await start();
    expect(await failureOf(adapter.refresh(serializeBookingCredentials({ ...BOOKING_TEST_ACCOUNT, clientSecret: 'wrong' })))).toMatchObject({ kind: 'invalid_grant' });
    booking.switches.invalidCredentials = true;
    expect(await failureOf(adapter.refresh(credentials))).toMatchObject({ kind: 'invalid_grant', details: { status: 401 } });
    booking.switches.invalidCredentials = false;
    booking.switches.failNext(1, 502, 'token');
    expect(await failureOf(adapter.refresh(credentials))).toMatchObject({ kind: 'transient', details: { status: 502 } });
    expect(booking.calls.map((call) => call.status)).toEqual([401, 401, 502]);
  });

  it('serves the queues only with an unexpired JWT and removes only what was delivered and acknowledged', async () => {
    const { adapter, ota, credentials } = await start();
    const { accessToken } = await adapter.refresh(credentials);
    const first = booking.queueReservation({ hotelId: '1', guest: { givenName: 'A', surname: 'B' }, checkIn: '2031-02-01', checkOut: '2031-02-02' });
    const { reservations: delivered } = await ota.pendingReservations('reservations', accessToken);
    const second = booking.queueReservation({ hotelId: '1', guest: { givenName: 'C', surname: 'D' }, checkIn: '2031-02-01', checkOut: '2031-02-02' });
    expect(delivered.map((reservation) => reservation.externalId)).toEqual([first]);

    await ota.acknowledge('reservations', accessToken, [first, second], new Date(now));
    expect(booking.acknowledged().map((ack) => ack.reservationId)).toEqual([first]);
    expect(booking.pending('reservations')).toEqual([second]);

    now += HOUR;
    expect(await failureOf(ota.pendingReservations('reservations', accessToken))).toMatchObject({ kind: 'transient', details: { status: 401 } });
    expect(booking.calls.at(-1)).toMatchObject({ endpoint: 'poll', status: 401, accessTokenExpired: true });
    expect(booking.issuedSecrets()).toEqual([accessToken, BOOKING_TEST_ACCOUNT.clientSecret]);
  });
});
