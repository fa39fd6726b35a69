import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { startFakeMicrosoft, type FakeMicrosoft } from '../../fakes/microsoft';
import { startFakeBooking, type FakeBooking } from '../../fakes/booking';
import type { FakeAirbnb } from '../../fakes/airbnb';
import { refreshNowUpdate } from '../../workflows/connection-messages';
import { airbnbEnvironment, connectAirbnb, startTestAirbnb } from '../helpers/airbnb';
import { BOOKING_TEST_ACCOUNT, bookingEnvironment, connectBooking } from '../helpers/booking';
import { connectGoogleAccount, liveChannelsOf } from '../helpers/google-calendar';
import { connectMicrosoftCalendar, MICROSOFT_TEST_CLIENT, microsoftEnvironment } from '../helpers/microsoft';
import { fakeGoogleEnvironment, GOOGLE_TEST_CLIENT, startTestPlatform, TEST_PASSWORD, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { startTemporalDevServer } from '../helpers/temporal';
import { startWorkerProcess, type WorkerProcess } from './worker-process';

/**
 * Issue 5: no secret is ever logged. The api-server (in process, its log stream captured) and the
 * production worker process (its stdout and stderr captured) both log at debug level through a full
 * run of every provider: connect, webhooks, syncs, a forced refresh, disconnect. Afterwards every
 * secret the fakes issued or were given, and every credential of ours, is looked for in every line.
 */
describe('logs of a full run hold no secret', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let microsoft: FakeMicrosoft;
  let airbnb: FakeAirbnb;
  let booking: FakeBooking;
  let platform: TestPlatform;
  let worker: WorkerProcess;
  let apiLog = '';
  const ourSecrets: string[] = [TEST_PASSWORD, BOOKING_TEST_ACCOUNT.clientSecret, MICROSOFT_TEST_CLIENT.clientSecret];

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    [google, microsoft, airbnb, booking] = await Promise.all([
      startFakeGoogle(GOOGLE_TEST_CLIENT),
      startFakeMicrosoft({ ...MICROSOFT_TEST_CLIENT }),
      startTestAirbnb(),
      startFakeBooking({ clientId: BOOKING_TEST_ACCOUNT.clientId, clientSecret: BOOKING_TEST_ACCOUNT.clientSecret }),
    ]);
    const environment = {
      LOG_LEVEL: 'debug',
      ...microsoftEnvironment(microsoft),
      ...airbnbEnvironment(airbnb),
      ...bookingEnvironment(booking, { pollIntervalSeconds: 2, ackPauseMs: 0 }),
    };
    const capture = new Writable({
      write(chunk: Buffer, _encoding, done) {
        apiLog += chunk.toString('utf8');
        done();
      },
    });
    platform = await startTestPlatform({ temporal, google, environment, worker: false, logDestination: capture });
    google.registerRiscReceiver(`${platform.apiUrl}/api/v1/webhooks/google-risc`);
    worker = await startWorkerProcess(platform, temporal, google, { ...fakeGoogleEnvironment(google), ...environment });
    await worker.ready();
  });

  afterAll(async () => {
    if (worker && worker.child.exitCode === null) {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
    await platform?.close();
    await Promise.all([google?.close(), microsoft?.close(), airbnb?.close(), booking?.close()]);
    await temporal?.teardown();
  });

  const disconnect = (provider: string, sessionToken: string) =>
    fetch(`${platform.apiUrl}/api/v1/integrations/${provider}/disconnect`, { method: 'POST', headers: { authorization: `Bearer ${sessionToken}` } });
  const synced = (workflowId: string, runs = 1) =>
    waitForConnectionState(platform, workflowId, (state) => (state.sync?.runCount ?? 0) >= runs && state.sync?.lastOutcome === 'succeeded', 60_000);

  it('runs every provider end to end with debug logging', async () => {
    const googleUser = await connectGoogleAccount(platform, google, 'logs.google@example.com', '100000000000000000077');
    ourSecrets.push(googleUser.sessionToken);
    google.calendar('100000000000000000077').add({ summary: 'Busy', start: '2031-01-10', end: '2031-01-11' });
    await synced(googleUser.workflowId);
    await google.notify(liveChannelsOf(google, '100000000000000000077')[0]!.id);
    await synced(googleUser.workflowId, 2);
    await googleUser.handle.executeUpdate(refreshNowUpdate);
    await google.sendSecurityEvent('100000000000000000077', 'sessions-revoked');
    await waitForConnectionState(platform, googleUser.workflowId, (state) => state.status === 'needs_reauth');
    expect((await disconnect('google-calendar', googleUser.sessionToken)).status).toBe(202);
    await googleUser.handle.result();

    const microsoftUser = await platform.signUp('logs.microsoft@example.com');
    ourSecrets.push(microsoftUser.sessionToken);
    const outlook = await connectMicrosoftCalendar(platform, microsoft, microsoftUser.sessionToken);
    await synced(outlook.workflowId);
    const [subscription] = microsoft.liveSubscriptions(outlook.oid);
    const viewing = microsoft.addEvent(outlook.oid, { subject: 'Viewing', start: '2031-02-01T10:00:00Z', end: '2031-02-01T11:00:00Z' });
    await microsoft.notify(subscription!.id, { eventId: viewing, changeType: 'created' });
    await synced(outlook.workflowId, 2);
    expect((await disconnect('microsoft-calendar', microsoftUser.sessionToken)).status).toBe(202);
    await platform.client.workflow.getHandle(outlook.workflowId).result();

    const airbnbUser = await platform.signUp('logs.airbnb@example.com');
    ourSecrets.push(airbnbUser.sessionToken);
    const host = airbnb.createHost(['Harbour View']);
    const stay = await connectAirbnb(platform, airbnbUser.sessionToken);
    await synced(stay.workflowId);
    airbnb.createReservation({ listingId: host.listings[0]!.id, startDate: '2031-07-01', endDate: '2031-07-05', guestFirstName: 'Ada' });
    await airbnb.sendReservationEvent({ userId: host.userId });
    await synced(stay.workflowId, 2);
    expect((await disconnect('airbnb', airbnbUser.sessionToken)).status).toBe(202);
    await platform.client.workflow.getHandle(stay.workflowId).result();

    const bookingUser = await platform.signUp('logs.booking@example.com');
    ourSecrets.push(bookingUser.sessionToken);
    const hotel = await connectBooking(platform, bookingUser.sessionToken);
    expect(hotel.status).toBe(202);
    booking.queueReservation({ hotelId: 'H-1', guest: { givenName: 'Grace', surname: 'Hopper' }, checkIn: '2031-05-01', checkOut: '2031-05-04' });
    await waitForConnectionState(platform, hotel.body.workflowId!, (state) => (state.sync?.lastCounts?.created ?? 0) > 0, 60_000);
    expect((await disconnect('booking-com', bookingUser.sessionToken)).status).toBe(202);
    await platform.client.workflow.getHandle(hotel.body.workflowId!).result();
  });

  it('captured both processes: request lines with ids, activity lines with workflow ids', () => {
    const apiLines = apiLog.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { requestId?: string; req?: { path?: string } });
    const paths = apiLines.map((line) => line.req?.path);
    for (const path of ['/api/v1/integrations/google-calendar/callback', '/api/v1/webhooks/google-calendar', '/api/v1/webhooks/microsoft-graph', '/api/v1/webhooks/airbnb', '/api/v1/integrations/booking-com/connect']) {
      expect(paths).toContain(path);
    }
    expect(apiLines.filter((line) => line.req).every((line) => typeof line.requestId === 'string')).toBe(true);
    const activityLines = worker.logLines.filter((line) => typeof line.activityType === 'string');
    for (const activity of ['exchangeAuthorizationCode', 'refreshConnectionTokens', 'syncConnection', 'stopConnectionSubscriptions', 'revokeConnectionUpstream', 'activateMachineAccount']) {
      expect(activityLines.some((line) => line.activityType === activity && typeof line.workflowId === 'string')).toBe(true);
    }
  });

  it('finds no issued token, code, client secret, webhook secret, session token or key in any log line', () => {
    const secrets = [
      ...google.issuedSecrets(),
      ...microsoft.issuedSecrets(),
      ...airbnb.issuedSecrets(),
      ...booking.issuedSecrets(),
      ...ourSecrets,
      platform.config.encryption.activeKey!,
      platform.config.payloadEncryption.activeKey!,
    ];
    expect(secrets.length).toBeGreaterThan(20);
    const logs = { api: apiLog, worker: worker.output() };
    const leaks = Object.entries(logs).flatMap(([source, text]) => secrets.filter((secret) => text.includes(secret)).map((secret) => `${source}: ${secret.slice(0, 12)}…`));
    expect(leaks).toEqual([]);
  });
});
