import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { connectMicrosoftCalendar, disconnectMicrosoftCalendar, MICROSOFT_TEST_CLIENT, microsoftEnvironment, microsoftStatus } from '../helpers/microsoft';
import { historyPayloadTexts } from '../helpers/history';
import { startFakeMicrosoft, type FakeMicrosoft } from '../../fakes/microsoft';
import type { FakeGraphCall } from '../../fakes/microsoft-graph';
import { blockedDates, listCalendarEvents } from '../../db/queries/calendar-events';
import { invalidatedSignal, syncRequestSignal } from '../../workflows/connection-messages';

const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;

/**
 * Microsoft Calendar end to end on a Temporal dev server, real Postgres and the fake Microsoft over
 * HTTP: connect through the four endpoints, the Graph subscription and its handshake, calendarView
 * delta sync (paging, a change, a deletion, 410), and a disconnect that revokes nothing upstream.
 */
describe('Microsoft Calendar connection and sync (dev server)', () => {
  let temporal: TestWorkflowEnvironment;
  let microsoft: FakeMicrosoft;
  let platform: TestPlatform;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    microsoft = await startFakeMicrosoft(MICROSOFT_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, environment: microsoftEnvironment(microsoft, { MICROSOFT_CALENDAR_SCOPES: 'openid offline_access Calendars.Read' }) });
  });

  afterAll(async () => {
    await platform?.close();
    await microsoft?.close();
    await temporal?.teardown();
  });

  const texts = (query: ReturnType<typeof sql.unsafe>) => platform.db.anyFirst(sql.type(z.object({ row: z.string() }))`SELECT row::text AS row FROM (${query}) AS row`);
  const subscriptionRows = (connectionId: string) =>
    platform.db.any(sql.type(z.object({ externalId: z.string(), status: z.string(), verificationEnc: z.string().nullable() }))`
      SELECT external_id AS "externalId", status, verification_enc AS "verificationEnc" FROM webhook_subscriptions WHERE connection_id = ${connectionId}`);
  const auditRows = (connectionId: string) =>
    platform.db.any(sql.type(z.object({ action: z.string(), details: z.record(z.unknown()) }))`
      SELECT action, details FROM audit_log WHERE connection_id = ${connectionId} ORDER BY id`);
  const deltaCalls = (since: number) => microsoft.calls.slice(since).filter((call): call is FakeGraphCall => call.endpoint === 'delta');
  const graphCalls = (since: number, endpoint: FakeGraphCall['endpoint']) => microsoft.calls.slice(since).filter((call): call is FakeGraphCall => call.endpoint === endpoint);

  async function connect(email: string) {
    const { userId, sessionToken } = await platform.signUp(email);
    const oid = microsoft.prepareAccount();
    return { userId, sessionToken, oid };
  }

  async function syncedTimes(workflowId: string, runs: number) {
    return waitForConnectionState(platform, workflowId, (state) => (state.sync?.runCount ?? 0) >= runs);
  }

  it('syncs the calendar, follows a change and a deletion from a notification, and reads everything again after 410', async () => {
    const { userId, sessionToken, oid } = await connect('olivia@example.com');
    const now = Date.now();
    const eventIds: string[] = [];
    // More events than one page holds, so the first read follows a nextLink.
    for (let index = 0; index < 101; index++) {
      eventIds.push(microsoft.addEvent(oid, { subject: `Viewing ${index}`, start: new Date(now + DAY + index * HOUR).toISOString(), end: new Date(now + DAY + (index + 1) * HOUR).toISOString() }));
    }
    const holidayDate = new Date(now + 200 * DAY).toISOString().slice(0, 10);
    const nextDay = new Date(Date.parse(holidayDate) + DAY).toISOString().slice(0, 10);
    microsoft.addEvent(oid, { subject: 'Owner holiday', start: `${holidayDate}T00:00:00Z`, end: `${nextDay}T00:00:00Z`, isAllDay: true });
    microsoft.addEvent(oid, { subject: 'Cancelled', start: new Date(now + 2 * DAY).toISOString(), end: new Date(now + 2 * DAY + HOUR).toISOString(), isCancelled: true });
    microsoft.addEvent(oid, { subject: 'Free time', start: new Date(now + 4 * DAY).toISOString(), end: new Date(now + 4 * DAY + HOUR).toISOString(), showAs: 'free' });
    microsoft.addEvent(oid, { subject: 'Too far ahead', start: new Date(now + 400 * DAY).toISOString(), end: new Date(now + 401 * DAY).toISOString() });
    const propertyId = await platform.db.oneFirst(sql.type(z.object({ id: z.string() }))`
      INSERT INTO properties (owner_user_id, name) VALUES (${userId}, 'Lake cabin') RETURNING id`);

    const callsBefore = microsoft.calls.length;
    const connected = await connectMicrosoftCalendar(platform, microsoft, sessionToken);
    expect(connected.httpStatus).toBe(202);
    expect(Object.fromEntries(connected.authorizeUrl.searchParams)).toMatchObject({ response_mode: 'query', code_challenge_method: 'S256', scope: 'openid offline_access Calendars.Read' });
    const { connectionId, workflowId } = connected;
    const first = await syncedTimes(workflowId, 1);
    expect(first.sync).toMatchObject({ lastOutcome: 'succeeded', lastCounts: { created: 102, updated: 0, deleted: 0, fullResync: true } });
    expect(deltaCalls(callsBefore).map((call) => call.delta)).toEqual(['initial', 'next']);
    const stored = await listCalendarEvents(platform.db, connectionId);
    expect(stored).toHaveLength(102);
    expect(stored.find((event) => event.title === 'Owner holiday')).toMatchObject({ allDay: true, startsAt: Date.parse(`${holidayDate}T00:00:00Z`), endsAt: Date.parse(`${nextDay}T00:00:00Z`) });
    expect(await blockedDates(platform.db, propertyId)).toContain(holidayDate);
    expect(await platform.db.oneFirst(sql.type(z.object({ id: z.string().nullable() }))`
      SELECT provider_account_id AS id FROM integration_connections WHERE id = ${connectionId}`)).toBe(oid);

    // One subscription at Graph, its clientState stored only encrypted.
    const [subscription] = microsoft.liveSubscriptions(oid);
    expect(microsoft.liveSubscriptions(oid)).toHaveLength(1);
    expect(subscription).toMatchObject({ resource: 'me/events', changeType: 'created,updated,deleted', lifecycleNotificationUrl: `${platform.apiUrl}/api/v1/webhooks/microsoft-graph/lifecycle` });
    expect(subscription!.notificationUrl).toMatch(new RegExp(`^${platform.apiUrl}/api/v1/webhooks/microsoft-graph\\?ref=[0-9a-f-]{36}$`));
    const [row] = await subscriptionRows(connectionId);
    expect(row).toMatchObject({ externalId: subscription!.id, status: 'active' });
    expect(row!.verificationEnc).not.toContain(subscription!.clientState!);

    // A change, a deletion and a new event, announced by a notification.
    const moved = eventIds[0]!;
    microsoft.updateEvent(oid, moved, { subject: 'Viewing (moved)', start: new Date(now + 3 * DAY).toISOString(), end: new Date(now + 3 * DAY + HOUR).toISOString() });
    microsoft.deleteEvent(oid, eventIds[1]!);
    microsoft.addEvent(oid, { subject: 'Cleaning', start: new Date(now + 5 * DAY).toISOString(), end: new Date(now + 5 * DAY + HOUR).toISOString() });
    const since = microsoft.calls.length;
    expect((await microsoft.notify(subscription!.id, { eventId: moved, changeType: 'updated' })).status).toBe(202);
    const second = await syncedTimes(workflowId, 2);
    expect(second.sync!.lastCounts).toEqual({ created: 1, updated: 1, deleted: 1, fullResync: false });
    expect(deltaCalls(since).map((call) => call.delta)).toEqual(['incremental']);
    const afterChange = await listCalendarEvents(platform.db, connectionId);
    expect(afterChange).toHaveLength(102);
    expect(afterChange.find((event) => event.externalId === moved)).toMatchObject({ title: 'Viewing (moved)', startsAt: now + 3 * DAY });
    expect(afterChange.some((event) => event.externalId === eventIds[1])).toBe(false);

    // Graph forgets the delta token: 410, then a full read that also notices a deletion made meanwhile.
    microsoft.switches.deltaGone();
    microsoft.deleteEvent(oid, eventIds[2]!);
    const beforeGone = microsoft.calls.length;
    await platform.client.workflow.getHandle(workflowId).signal(syncRequestSignal, { reason: 'test', full: false });
    const third = await syncedTimes(workflowId, 3);
    expect(third.sync!.lastCounts).toEqual({ created: 0, updated: 101, deleted: 1, fullResync: true });
    expect(deltaCalls(beforeGone).map((call) => [call.delta, call.status])).toEqual([['incremental', 410], ['initial', 200], ['next', 200]]);
    expect(await listCalendarEvents(platform.db, connectionId)).toHaveLength(101);

    const status = await microsoftStatus(platform, sessionToken);
    expect(status).toMatchObject({
      provider: 'microsoft-calendar',
      connected: true,
      upstreamRevocation: { supported: false },
      connection: { status: 'active', sync: { lastOutcome: 'succeeded', lastCounts: { created: 0, updated: 101, deleted: 1, fullResync: true } } },
    });
    await disconnectMicrosoftCalendar(platform, sessionToken);
    await platform.client.workflow.getHandle(workflowId).result();
  });

  it('disconnects: deletes the subscription, wipes tokens and events, never calls revokeSignInSessions, and audits each step', async () => {
    const { sessionToken, oid } = await connect('peter@example.com');
    microsoft.addEvent(oid, { subject: 'Guest stay', start: new Date(Date.now() + DAY).toISOString(), end: new Date(Date.now() + 2 * DAY).toISOString() });
    const { connectionId, workflowId } = await connectMicrosoftCalendar(platform, microsoft, sessionToken);
    await syncedTimes(workflowId, 1);
    const [subscription] = microsoft.liveSubscriptions(oid);
    expect(subscription).toBeDefined();

    const before = await microsoftStatus(platform, sessionToken);
    expect(before.upstreamRevocation).toEqual({ supported: false, note: expect.stringMatching(/no way to revoke/) });
    expect((await disconnectMicrosoftCalendar(platform, sessionToken)).status).toBe(202);
    const handle = platform.client.workflow.getHandle(workflowId);
    expect(await handle.result()).toEqual({ status: 'disconnected', revocation: 'not_supported' });

    expect(microsoft.liveSubscriptions(oid)).toEqual([]);
    expect(microsoft.calls.filter((call) => call.endpoint === 'subscriptions.delete')).toContainEqual(expect.objectContaining({ subscriptionId: subscription!.id, status: 204 }));
    expect(microsoft.revokeSignInSessionsCalls()).toBe(0);
    const connection = await platform.db.one(sql.type(z.object({ status: z.string(), tokens: z.number(), revocation: z.string().nullable() }))`
      SELECT status, num_nonnulls(access_token_enc, refresh_token_enc, previous_refresh_token_enc)::int AS tokens, revocation_outcome AS revocation
      FROM integration_connections WHERE id = ${connectionId}`);
    expect(connection).toEqual({ status: 'disconnected', tokens: 0, revocation: 'not_supported' });
    expect(await listCalendarEvents(platform.db, connectionId)).toEqual([]);
    expect(await subscriptionRows(connectionId)).toEqual([{ externalId: subscription!.id, status: 'stopped', verificationEnc: null }]);

    const audit = await auditRows(connectionId);
    expect(audit.map((entry) => entry.action)).toEqual(['IntegrationConnect', 'WebhookSubscriptionCreate', 'WebhookSubscriptionStop', 'OAuthRevoke', 'IntegrationDisconnect']);
    expect(audit.find((entry) => entry.action === 'WebhookSubscriptionStop')!.details).toMatchObject({ subscriptionId: subscription!.id, reason: 'disconnected' });
    expect(audit.find((entry) => entry.action === 'OAuthRevoke')!.details).toMatchObject({ revocation: 'not_supported' });
    expect(audit.find((entry) => entry.action === 'IntegrationDisconnect')!.details).toEqual({ revocation: 'not_supported' });
    expect(await microsoftStatus(platform, sessionToken)).toMatchObject({ connected: false, upstreamRevocation: { supported: false }, connection: { status: 'disconnected', revocation: 'not_supported' } });

    // No token, code, clientState or client secret in the history or in any plaintext column.
    const secrets = microsoft.issuedSecrets();
    expect(secrets.length).toBeGreaterThan(5);
    const history = (await historyPayloadTexts(handle)).join('\n');
    expect(history).toContain(connectionId);
    const tables = (
      await Promise.all(
        ['audit_log', 'sync_cursors', 'sync_runs', 'webhook_subscriptions', 'webhook_deliveries', 'calendar_events', 'integration_connections'].map((table) =>
          texts(sql.unsafe`SELECT * FROM ${sql.identifier([table])}`),
        ),
      )
    ).flat().join('\n');
    for (const secret of secrets) {
      expect(history).not.toContain(secret);
      expect(tables).not.toContain(secret);
    }
  });

  it('adopts the subscription Graph made when the creation answer was lost, rather than making a second one', async () => {
    const { sessionToken, oid } = await connect('quentin@example.com');
    const eventId = microsoft.addEvent(oid, { subject: 'Guest stay', start: new Date(Date.now() + DAY).toISOString(), end: new Date(Date.now() + 2 * DAY).toISOString() });
    microsoft.switches.loseCreateAnswers(1);
    const since = microsoft.calls.length;
    const { connectionId, workflowId } = await connectMicrosoftCalendar(platform, microsoft, sessionToken);
    await waitForConnectionState(platform, workflowId, (state) => state.setUpDueAt === undefined && state.renewSubscriptionsAt !== undefined && (state.sync?.runCount ?? 0) >= 1);

    // The first attempt made a subscription but never learned its id; the retry found it in Graph's list.
    const creates = graphCalls(since, 'subscriptions.create');
    expect(creates.map((call) => call.status)).toEqual([504]);
    expect(graphCalls(since, 'subscriptions.list').map((call) => call.status)).toEqual([200]);
    const live = microsoft.liveSubscriptions(oid);
    expect(live.map((subscription) => subscription.id)).toEqual([creates[0]!.subscriptionId]);
    expect(await subscriptionRows(connectionId)).toEqual([{ externalId: live[0]!.id, status: 'active', verificationEnc: expect.any(String) }]);
    const created = (await auditRows(connectionId)).filter((entry) => entry.action === 'WebhookSubscriptionCreate');
    expect(created.map((entry) => entry.details)).toEqual([expect.objectContaining({ subscriptionId: live[0]!.id, reason: 'answer_lost' })]);

    // The adopted subscription's notifications carry the clientState stored before Graph was asked.
    const runsBefore = (await syncedTimes(workflowId, 1)).sync!.runCount;
    expect((await microsoft.notify(live[0]!.id, { eventId, changeType: 'updated' })).status).toBe(202);
    await syncedTimes(workflowId, runsBefore + 1);

    await disconnectMicrosoftCalendar(platform, sessionToken);
    await platform.client.workflow.getHandle(workflowId).result();
    expect(microsoft.liveSubscriptions(oid)).toEqual([]);
  });

  it('disconnects at once when Graph refuses the token after the grant was revoked: the subscription is ended here and lapses at Graph', async () => {
    const { sessionToken, oid } = await connect('rosa@example.com');
    const { connectionId, workflowId } = await connectMicrosoftCalendar(platform, microsoft, sessionToken);
    await syncedTimes(workflowId, 1);
    const [subscription] = microsoft.liveSubscriptions(oid);
    const handle = platform.client.workflow.getHandle(workflowId);
    microsoft.revokeGrants(oid);
    await handle.signal(invalidatedSignal, { reason: 'grant_revoked' });
    await waitForConnectionState(platform, workflowId, (state) => state.status === 'needs_reauth');

    const since = microsoft.calls.length;
    expect((await disconnectMicrosoftCalendar(platform, sessionToken)).status).toBe(202);
    expect(await handle.result()).toEqual({ status: 'disconnected', revocation: 'not_supported' });
    // A refused DELETE is final: it was sent once, never retried (a retry would hold the disconnect for 10 minutes).
    expect(graphCalls(since, 'subscriptions.delete')).toEqual([expect.objectContaining({ status: 401, error: 'InvalidAuthenticationToken' })]);
    expect(await subscriptionRows(connectionId)).toEqual([{ externalId: subscription!.id, status: 'failed', verificationEnc: null }]);
    const stop = (await auditRows(connectionId)).filter((entry) => entry.action === 'WebhookSubscriptionStop');
    expect(stop.map((entry) => entry.details)).toEqual([{ subscriptionId: subscription!.id, reason: 'disconnected_token_refused' }]);
  });
});
