import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { blockedDates, listCalendarEvents } from '../../db/queries/calendar-events';
import { readSyncCursor } from '../../db/queries/sync';
import { GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { auditActions, connectGoogleAccount, insertProperty, liveChannelsOf } from '../helpers/google-calendar';

/**
 * Google Calendar sync end to end on a real Temporal dev server, real Postgres and the fake Google over
 * HTTP: the push channel opened on connect, the first sync, notifications that turn into incremental
 * syncs, the full resync after a 410, blocked dates, and a disconnect that leaves nothing behind.
 */
describe('Google Calendar sync (dev server)', () => {
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

  const syncRuns = (workflowId: string, atLeast: number) =>
    waitForConnectionState(platform, workflowId, (state) => (state.sync?.runCount ?? 0) >= atLeast && state.nextSyncAt! > Date.now());

  it('opens a push channel, reads the calendar, and follows a change and a deletion announced by a notification', async () => {
    const account = '100000000000000000001';
    const calendar = google.calendar(account);
    const checkIn = calendar.add({ summary: 'Ski week', start: '2031-01-10', end: '2031-01-13' });
    const dentist = calendar.add({ summary: 'Dentist', start: '2031-01-20T09:00:00+01:00', end: '2031-01-20T10:00:00+01:00' });
    const lunch = calendar.add({ summary: 'Lunch', start: '2031-01-21T12:00:00Z', end: '2031-01-21T13:00:00Z' });
    calendar.add({ summary: 'Free time', start: '2031-01-25', end: '2031-01-26', transparent: true });

    const connection = await connectGoogleAccount(platform, google, 'sync.ann@example.com', account);
    const propertyId = await insertProperty(platform, connection.userId, 'Chalet');
    const state = await syncRuns(connection.workflowId, 1);
    expect(state.sync).toMatchObject({ lastOutcome: 'succeeded', lastCounts: { created: 3, updated: 0, deleted: 0, fullResync: true } });

    const [channel, ...others] = liveChannelsOf(google, account);
    expect(others).toEqual([]);
    expect(channel!.address).toBe(`${platform.apiUrl}/api/v1/webhooks/google-calendar`);
    const subscription = await platform.db.one(sql.type(z.object({ id: z.string(), resourceId: z.string(), verificationEnc: z.string(), expiresAt: z.number() }))`
      SELECT id, resource_id AS "resourceId", verification_enc AS "verificationEnc", expires_at AS "expiresAt"
      FROM webhook_subscriptions WHERE connection_id = ${connection.connectionId} AND status = 'active'`);
    expect(subscription).toMatchObject({ id: channel!.id, resourceId: channel!.resourceId, expiresAt: channel!.expiration });
    expect(subscription.verificationEnc).not.toContain(channel!.token!);
    expect(platform.crypto.decrypt(subscription.verificationEnc, { table: 'webhook_subscriptions', column: 'verification_enc', rowId: subscription.id })).toBe(channel!.token);
    // Replaced well before it expires, within the last day of its week.
    expect(state.renewSubscriptionsAt).toBeGreaterThanOrEqual(channel!.expiration - 24 * 3600 * 1000);
    expect(state.renewSubscriptionsAt).toBeLessThan(channel!.expiration - 3600 * 1000);

    expect(await listCalendarEvents(platform.db, connection.connectionId)).toEqual([
      { calendarId: 'primary', externalId: checkIn, title: 'Ski week', startsAt: Date.parse('2031-01-10T00:00:00Z'), endsAt: Date.parse('2031-01-13T00:00:00Z'), allDay: true },
      { calendarId: 'primary', externalId: dentist, title: 'Dentist', startsAt: Date.parse('2031-01-20T08:00:00Z'), endsAt: Date.parse('2031-01-20T09:00:00Z'), allDay: false },
      { calendarId: 'primary', externalId: lunch, title: 'Lunch', startsAt: Date.parse('2031-01-21T12:00:00Z'), endsAt: Date.parse('2031-01-21T13:00:00Z'), allDay: false },
    ]);
    expect(await blockedDates(platform.db, propertyId)).toEqual(['2031-01-10', '2031-01-11', '2031-01-12', '2031-01-20', '2031-01-21']);

    calendar.change(checkIn, { start: '2031-01-11', end: '2031-01-12' });
    calendar.remove(lunch);
    const deliveries = await google.notify(channel!.id);
    expect(deliveries.map((delivery) => [delivery.state, delivery.status])).toEqual([['sync', 200], ['exists', 200]]);
    const after = await syncRuns(connection.workflowId, 2);
    expect(after.sync?.lastCounts).toEqual({ created: 0, updated: 1, deleted: 1, fullResync: false });
    expect(await blockedDates(platform.db, propertyId)).toEqual(['2031-01-11', '2031-01-20']);
    const lists = google.calls.filter((call) => call.endpoint === 'eventsList');
    expect(lists.every((call) => call.status === 200)).toBe(true);
  });

  it('reads everything again when Google answers 410 for the sync token', async () => {
    const account = '100000000000000000002';
    const calendar = google.calendar(account);
    const kept = calendar.add({ summary: 'Kept', start: '2031-02-01', end: '2031-02-02' });
    const connection = await connectGoogleAccount(platform, google, 'sync.bob@example.com', account);
    await syncRuns(connection.workflowId, 1);
    const staleToken = await readSyncCursor(platform.db, connection.connectionId, 'calendars/primary/events');
    expect(staleToken).not.toBeNull();

    google.switches.calendar.expireSyncTokens();
    const added = calendar.add({ summary: 'Added', start: '2031-02-05', end: '2031-02-06' });
    google.switches.calendar.eventsPageSize = 1;
    try {
      await google.notify(liveChannelsOf(google, account)[0]!.id);
      const state = await syncRuns(connection.workflowId, 2);
      expect(state.sync?.lastCounts).toEqual({ created: 1, updated: 1, deleted: 0, fullResync: true });
    } finally {
      google.switches.calendar.eventsPageSize = 250;
    }
    expect(google.calls.filter((call) => call.endpoint === 'eventsList').map((call) => call.status)).toContain(410);
    expect((await listCalendarEvents(platform.db, connection.connectionId)).map((event) => event.externalId).sort()).toEqual([added, kept].sort());
    const freshToken = await readSyncCursor(platform.db, connection.connectionId, 'calendars/primary/events');
    expect(freshToken).not.toBeNull();
    expect(freshToken).not.toBe(staleToken);
  });

  it('skips an event without readable times and keeps syncing the rest, so the sync token advances', async () => {
    const account = '100000000000000000004';
    const calendar = google.calendar(account);
    const good = calendar.add({ summary: 'Good', start: '2031-04-01', end: '2031-04-02' });
    calendar.add({ summary: 'No start', start: '2031-04-03', end: '2031-04-04', wire: { start: undefined } });
    calendar.add({ summary: 'Bad end', start: '2031-04-05T10:00:00Z', end: '2031-04-05T11:00:00Z', wire: { end: { dateTime: 'soon' } } });
    calendar.add({ summary: 'Backwards', start: '2031-04-07', end: '2031-04-06' });
    const connection = await connectGoogleAccount(platform, google, 'sync.dora@example.com', account);
    const first = await syncRuns(connection.workflowId, 1);
    expect(first.sync).toMatchObject({ lastOutcome: 'succeeded', lastCounts: { created: 1, updated: 0, deleted: 0, fullResync: true } });
    const firstToken = await readSyncCursor(platform.db, connection.connectionId, 'calendars/primary/events');
    expect(firstToken).not.toBeNull();

    const later = calendar.add({ summary: 'Later', start: '2031-04-10', end: '2031-04-11' });
    calendar.add({ summary: 'Odd again', start: '2031-04-12', end: '2031-04-13', wire: { start: { date: '2031-04-12' }, end: undefined } });
    await google.notify(liveChannelsOf(google, account)[0]!.id);
    const second = await syncRuns(connection.workflowId, 2);
    expect(second.sync).toMatchObject({ lastOutcome: 'succeeded', lastCounts: { created: 1, updated: 0, deleted: 0, fullResync: false } });
    expect((await listCalendarEvents(platform.db, connection.connectionId)).map((event) => event.externalId).sort()).toEqual([good, later].sort());
    expect(await readSyncCursor(platform.db, connection.connectionId, 'calendars/primary/events')).not.toBe(firstToken);
  });

  it('ends a sync with a protocol error when events.list never reaches its last page', async () => {
    const account = '100000000000000000005';
    const connection = await connectGoogleAccount(platform, google, 'sync.emil@example.com', account);
    await syncRuns(connection.workflowId, 1);
    google.switches.calendar.endlessPages = true;
    try {
      await google.notify(liveChannelsOf(google, account)[0]!.id);
      const state = await waitForConnectionState(platform, connection.workflowId, (s) => s.sync?.lastOutcome === 'failed', 60_000);
      expect(state.sync?.lastError?.message).toContain('events.list did not end within 1000 pages');
    } finally {
      google.switches.calendar.endlessPages = false;
    }
  });

  it('stops a channel whose events.watch answer was lost, with the resource id of the channel that replaced it', async () => {
    const account = '100000000000000000006';
    google.switches.calendar.loseNextWatchAnswers(1);
    const connection = await connectGoogleAccount(platform, google, 'sync.fay@example.com', account);
    await waitForConnectionState(platform, connection.workflowId, (state) => state.renewSubscriptionsAt !== undefined && state.renewSubscriptionsAt !== null, 60_000);

    const [lost, replacement, ...others] = google.channels().filter((channel) => channel.account === account);
    expect(others).toEqual([]);
    expect(google.calls.filter((call) => call.endpoint === 'eventsWatch' && call.answerLost)).toHaveLength(1);
    expect(lost!.stoppedAt).toBeDefined();
    expect(liveChannelsOf(google, account).map((channel) => channel.id)).toEqual([replacement!.id]);
    const rows = await platform.db.any(sql.type(z.object({ id: z.string(), status: z.string(), resourceId: z.string().nullable() }))`
      SELECT id, status, resource_id AS "resourceId" FROM webhook_subscriptions WHERE connection_id = ${connection.connectionId} ORDER BY created_at`);
    expect(rows).toEqual([
      { id: lost!.id, status: 'stopped', resourceId: null },
      { id: replacement!.id, status: 'active', resourceId: replacement!.resourceId },
    ]);
    const stops = await platform.db.anyFirst(sql.type(z.object({ details: z.record(z.unknown()) }))`
      SELECT details FROM audit_log WHERE connection_id = ${connection.connectionId} AND action = 'WebhookSubscriptionStop'`);
    expect(stops).toEqual([{ subscriptionId: lost!.id, reason: 'replaced', upstream: 'stopped' }]);
  });

  it('disconnect stops the channel at Google, wipes tokens and events, and leaves an audit trail', async () => {
    const account = '100000000000000000003';
    google.calendar(account).add({ summary: 'Busy', start: '2031-03-01', end: '2031-03-02' });
    const connection = await connectGoogleAccount(platform, google, 'sync.cleo@example.com', account);
    await syncRuns(connection.workflowId, 1);
    expect(liveChannelsOf(google, account)).toHaveLength(1);

    const disconnect = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/disconnect`, {
      method: 'POST',
      headers: { authorization: `Bearer ${connection.sessionToken}` },
    });
    expect(disconnect.status).toBe(202);
    expect(await connection.handle.result()).toEqual({ status: 'disconnected', revocation: 'revoked' });

    expect(liveChannelsOf(google, account)).toEqual([]);
    expect(google.channels().filter((channel) => channel.account === account).every((channel) => channel.stoppedAt !== undefined)).toBe(true);
    const stored = await platform.db.one(sql.type(z.object({ accessTokenEnc: z.string().nullable(), refreshTokenEnc: z.string().nullable() }))`
      SELECT access_token_enc AS "accessTokenEnc", refresh_token_enc AS "refreshTokenEnc" FROM integration_connections WHERE id = ${connection.connectionId}`);
    expect(stored).toEqual({ accessTokenEnc: null, refreshTokenEnc: null });
    const subscriptions = await platform.db.any(sql.type(z.object({ status: z.string(), verificationEnc: z.string().nullable() }))`
      SELECT status, verification_enc AS "verificationEnc" FROM webhook_subscriptions WHERE connection_id = ${connection.connectionId}`);
    expect(subscriptions).toEqual([{ status: 'stopped', verificationEnc: null }]);
    expect(await listCalendarEvents(platform.db, connection.connectionId)).toEqual([]);
    expect(await readSyncCursor(platform.db, connection.connectionId, 'calendars/primary/events')).toBeNull();
    expect(await auditActions(platform, connection.connectionId)).toEqual([
      'IntegrationConnect',
      'WebhookSubscriptionCreate',
      'WebhookSubscriptionStop',
      'OAuthRevoke',
      'IntegrationDisconnect',
    ]);
  });
});
