import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { startFakeMicrosoft, type FakeMicrosoft } from '../../fakes/microsoft';
import type { FakeAirbnb } from '../../fakes/airbnb';
import { statusQuery, type ConnectionState } from '../../workflows/connection-messages';
import { airbnbEnvironment, connectAirbnb, startTestAirbnb, storedAirbnbReservations } from '../helpers/airbnb';
import { eventually } from '../helpers/eventually';
import { connectGoogleAccount, liveChannelsOf } from '../helpers/google-calendar';
import { connectMicrosoftCalendar, MICROSOFT_TEST_CLIENT, microsoftEnvironment } from '../helpers/microsoft';
import { GOOGLE_TEST_CLIENT, startTestPlatform, type TestPlatform } from '../helpers/platform';
import { startTemporalDevServer } from '../helpers/temporal';
import { LogCapture } from '../helpers/secret-scan';
import { recordFault } from './fault-ledger';
import { expectNoSecretLeft } from './harness/secret-scan-after-run';

const ACCOUNTS_PER_PROVIDER = 3;
const ROUNDS = 4;
const CHANGES_PER_ROUND = 8;
/** How often each notification reaches us: once, and again as the provider's redeliveries. */
const COPIES = 8;
const IN_FLIGHT = 24;
const DAY = 24 * 3600 * 1000;

type Provider = 'google-calendar' | 'microsoft-calendar' | 'airbnb';

/** One notification as the provider sends it; `send` delivers one copy and returns our answer's status. */
interface Notification {
  provider: Provider;
  connection: Tracked;
  send(): Promise<number>;
}

interface Tracked {
  provider: Provider;
  connectionId: string;
  workflowId: string;
  /** The provider's side, to compare with what we store: Google/Microsoft event ids and titles, Airbnb codes and statuses. */
  live: Map<string, string>;
  unique: number;
  change(round: number, index: number): Notification;
}

/**
 * Thousands of duplicate and out-of-order notifications from Google (push), Microsoft Graph (change
 * notifications) and Airbnb (reservation webhooks) while their data keeps changing: each notification
 * reaches its workflow exactly once, syncs coalesce, and what we store ends equal to what the provider
 * holds, with no row twice and none missing. Booking.com sends no notifications (its queue is polled).
 */
describe('webhook storm', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let microsoft: FakeMicrosoft;
  let airbnb: FakeAirbnb;
  let platform: TestPlatform;
  const connections: Tracked[] = [];
  const apiLog = new LogCapture();
  const sessionTokens: string[] = [];

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    microsoft = await startFakeMicrosoft(MICROSOFT_TEST_CLIENT);
    airbnb = await startTestAirbnb();
    platform = await startTestPlatform({ temporal, google, environment: { ...microsoftEnvironment(microsoft), ...airbnbEnvironment(airbnb), LOG_LEVEL: 'debug' }, logDestination: apiLog });
    for (let index = 0; index < ACCOUNTS_PER_PROVIDER; index++) {
      connections.push(await connectGoogle(index), await connectMicrosoft(index), await connectAirbnbHost(index));
    }
    await eventually(async () => (await Promise.all(connections.map(state))).every((current) => current.status === 'active' && (current.sync?.runCount ?? 0) >= 1), 60_000, 'every connection active and synced once');
  });

  afterAll(async () => {
    await platform?.close();
    await Promise.all([google?.close(), microsoft?.close(), airbnb?.close(), temporal?.teardown()]);
  });

  const signUp = async (email: string) => {
    const signedUp = await platform.signUp(email);
    sessionTokens.push(signedUp.sessionToken);
    return signedUp;
  };

  const state = (connection: Tracked): Promise<ConnectionState> => platform.client.workflow.getHandle(connection.workflowId).query(statusQuery);

  async function connectGoogle(index: number): Promise<Tracked> {
    const account = `32000000000000000000${index}`;
    const calendar = google.calendar(account);
    const connected = await connectGoogleAccount(platform, google, `storm.g${index}@example.com`, account);
    sessionTokens.push(connected.sessionToken);
    await eventually(() => liveChannelsOf(google, account)[0]?.resourceId !== undefined && liveChannelsOf(google, account)[0], 30_000, 'a push channel');
    const live = new Map<string, string>();
    let messageNumber = 100;
    const tracked: Tracked = {
      provider: 'google-calendar',
      ...connected,
      live,
      unique: 0,
      change(round, change) {
        const [id] = [...live.keys()];
        const title = `g${index}-r${round}-c${change}`;
        if (change % 4 === 3 && id !== undefined) {
          calendar.remove(id);
          live.delete(id);
        } else if (change % 4 === 2 && id !== undefined) {
          calendar.change(id, { summary: title });
          live.set(id, title);
        } else {
          live.set(calendar.add({ summary: title, start: `2031-07-${String(1 + (change % 28)).padStart(2, '0')}`, end: `2031-07-${String(2 + (change % 28)).padStart(2, '0')}` }), title);
        }
        const channel = liveChannelsOf(google, account)[0]!;
        messageNumber += 1;
        return post(tracked, '/api/v1/webhooks/google-calendar', {
            'x-goog-channel-id': channel.id,
            'x-goog-channel-token': channel.token!,
            'x-goog-resource-id': channel.resourceId,
            'x-goog-resource-uri': channel.resourceUri,
            'x-goog-resource-state': 'exists',
            'x-goog-message-number': String(messageNumber),
        });
      },
    };
    return tracked;
  }

  async function connectMicrosoft(index: number): Promise<Tracked> {
    const { sessionToken } = await signUp(`storm.m${index}@example.com`);
    const connected = await connectMicrosoftCalendar(platform, microsoft, sessionToken);
    const { oid } = connected;
    await eventually(() => microsoft.liveSubscriptions(oid)[0], 30_000, 'a Graph subscription');
    const live = new Map<string, string>();
    const tracked: Tracked = {
      provider: 'microsoft-calendar',
      connectionId: connected.connectionId,
      workflowId: connected.workflowId,
      live,
      unique: 0,
      change(round, change) {
        const [id] = [...live.keys()];
        const subject = `m${index}-r${round}-c${change}`;
        const start = Date.now() + (1 + change) * DAY;
        let changeType: 'created' | 'updated' | 'deleted' = 'created';
        let eventId: string;
        if (change % 4 === 3 && id !== undefined) {
          microsoft.deleteEvent(oid, (eventId = id));
          live.delete(id);
          changeType = 'deleted';
        } else if (change % 4 === 2 && id !== undefined) {
          microsoft.updateEvent(oid, (eventId = id), { subject });
          live.set(id, subject);
          changeType = 'updated';
        } else {
          eventId = microsoft.addEvent(oid, { subject, start: new Date(start).toISOString(), end: new Date(start + 3600_000).toISOString() });
          live.set(eventId, subject);
        }
        const subscription = microsoft.liveSubscriptions(oid)[0]!;
        const resource = `Users/${oid}/Events/${eventId}`;
        const item = {
          subscriptionId: subscription.id,
          subscriptionExpirationDateTime: new Date(subscription.expiresAt).toISOString(),
          changeType,
          resource,
          resourceData: { '@odata.type': '#Microsoft.Graph.Event', '@odata.id': resource, '@odata.etag': `W/"${round}-${change}"`, id: eventId },
          clientState: subscription.clientState,
          tenantId: 'storm-tenant',
        };
        // Graph redelivers a notification unchanged.
        return post(tracked, '/api/v1/webhooks/microsoft-graph', { 'content-type': 'application/json' }, JSON.stringify({ value: [item] }));
      },
    };
    return tracked;
  }

  async function connectAirbnbHost(index: number): Promise<Tracked> {
    const { sessionToken } = await signUp(`storm.a${index}@example.com`);
    const host = airbnb.createHost([`Storm Flat ${index}`]);
    const listingId = host.listings[0]!.id;
    const connected = await connectAirbnb(platform, sessionToken);
    const live = new Map<string, string>();
    let events = 0;
    const tracked: Tracked = {
      provider: 'airbnb',
      connectionId: connected.connectionId,
      workflowId: connected.workflowId,
      live,
      unique: 0,
      change(round, change) {
        const open = [...live.entries()].filter(([, status]) => status === 'confirmed').map(([code]) => code);
        let type = 'reservation.created';
        if (change % 4 === 3 && open[0] !== undefined) {
          airbnb.cancelReservation(open[0]);
          live.set(open[0], 'cancelled');
          type = 'reservation.cancelled';
        } else if (change % 4 === 2 && open[0] !== undefined) {
          airbnb.alterReservation(open[0], { guestFirstName: `r${round}c${change}` });
          type = 'reservation.updated';
        } else {
          const day = 1 + ((round * CHANGES_PER_ROUND + change) % 27);
          const reservation = airbnb.createReservation({ listingId, startDate: `2032-0${1 + (day % 9)}-${String(day).padStart(2, '0')}`, endDate: `2032-0${1 + (day % 9)}-${String(day + 1).padStart(2, '0')}` });
          live.set(reservation.confirmation_code, 'confirmed');
        }
        events += 1;
        const eventId = `storm-${index}-${events}`;
        // Airbnb signs each delivery when it sends it; a redelivery carries the same event id.
        return {
          provider: 'airbnb',
          connection: tracked,
          send: async () => (await airbnb.sendReservationEvent({ userId: host.userId, type, eventId, listingId })).deliveries[0]!.status,
        };
      },
    };
    return tracked;
  }


  function post(connection: Tracked, path: string, headers: Record<string, string>, body?: string): Notification {
    return {
      provider: connection.provider,
      connection,
      send: async () => {
        const response = await fetch(`${platform.apiUrl}${path}`, { method: 'POST', headers, ...(body === undefined ? {} : { body }) });
        await response.arrayBuffer();
        return response.status;
      },
    };
  }

  /** Sends every copy, many at once, retrying what we answered 503 as providers do; returns the answers. */
  async function deliver(copies: Notification[]): Promise<{ statuses: number[]; retried: number }> {
    const statuses: number[] = [];
    let retried = 0;
    let next = 0;
    const sender = async () => {
      while (next < copies.length) {
        const notification = copies[next++]!;
        for (;;) {
          const status = await notification.send();
          if (status !== 503) {
            statuses.push(status);
            break;
          }
          retried += 1;
        }
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, sender));
    return { statuses, retried };
  }

  /** The providerEvent signals a workflow took, over every run (continue-as-new starts new ones). */
  async function providerEventSignals(connection: Tracked): Promise<number> {
    let total = 0;
    for await (const run of platform.client.workflow.list({ query: `WorkflowId = '${connection.workflowId}'` })) {
      const history = await platform.client.workflow.getHandle(connection.workflowId, run.runId).fetchHistory();
      total += (history.events ?? []).filter((event) => event.workflowExecutionSignaledEventAttributes?.signalName === 'providerEvent').length;
    }
    return total;
  }

  async function stored(connection: Tracked): Promise<Array<[string, string]>> {
    if (connection.provider === 'airbnb') return (await storedAirbnbReservations(platform, connection.connectionId)).map((row) => [row.externalId, row.status]);
    const rows = await platform.db.any(sql.type(z.object({ externalId: z.string(), title: z.string() }))`
      SELECT external_id AS "externalId", coalesce(title, '') AS title FROM calendar_events WHERE connection_id = ${connection.connectionId}`);
    return rows.map((row) => [row.externalId, row.title]);
  }

  const recordedDeliveries = () =>
    platform.db.oneFirst(sql.type(z.object({ count: z.number() }))`
      SELECT count(*)::int AS count FROM webhook_deliveries WHERE connection_id = ANY(${sql.array(connections.map((connection) => connection.connectionId), 'uuid')})`);

  const sorted = (entries: Iterable<[string, string]>) => [...entries].sort(([a], [b]) => a.localeCompare(b));

  it('applies each change once, whatever the duplicates and their order, and ends equal to the providers', async () => {
    const signalsBefore = await Promise.all(connections.map(providerEventSignals));
    const recordedBefore = await recordedDeliveries();
    const runsBefore = await Promise.all(connections.map(async (connection) => (await state(connection)).sync!.runCount));
    // Airbnb's stored reservations before: the storm's changes add to the host's first sync.
    for (const connection of connections.filter((tracked) => tracked.provider === 'airbnb')) {
      for (const [code, status] of await stored(connection)) connection.live.set(code, status);
    }
    const sent: Notification[] = [];
    let earlier: Notification[] = [];
    let statuses: number[] = [];
    let retried = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const fresh = connections.flatMap((connection) => Array.from({ length: CHANGES_PER_ROUND }, (_, change) => connection.change(round, change)));
      for (const notification of fresh) notification.connection.unique += 1;
      // Each of this round's notifications, several times, with late copies of the last round's, in random order.
      const copies = shuffle([...fresh.flatMap((notification) => Array<Notification>(COPIES - 2).fill(notification)), ...earlier, ...earlier]);
      const answered = await deliver(copies);
      statuses = [...statuses, ...answered.statuses];
      retried += answered.retried;
      sent.push(...copies);
      earlier = fresh;
    }
    const tail = await deliver(shuffle([...earlier, ...earlier]));
    statuses = [...statuses, ...tail.statuses];
    retried += tail.retried;
    sent.push(...earlier, ...earlier);

    expect(statuses.filter((status) => status !== 200 && status !== 202)).toEqual([]);
    const unique = connections.reduce((sum, connection) => sum + connection.unique, 0);
    expect(sent.length).toBe(unique * COPIES);

    // Exactly once: one recorded delivery and one signal per distinct notification.
    const recorded = (await recordedDeliveries()) - recordedBefore;
    const signalsAfter = await Promise.all(connections.map(providerEventSignals));
    const signals = connections.map((connection, index) => signalsAfter[index]! - signalsBefore[index]!);
    expect(signals).toEqual(connections.map((connection) => connection.unique));

    // The syncs those signals asked for run, and what we hold equals what each provider holds.
    await eventually(async () => {
      const all = await Promise.all(connections.map(async (connection) => JSON.stringify(sorted(await stored(connection))) === JSON.stringify(sorted(connection.live))));
      return all.every(Boolean);
    }, 90_000, 'every connection holding what its provider holds').catch(async (error) => {
      for (const connection of connections) console.error(connection.provider, JSON.stringify(sorted(await stored(connection))), JSON.stringify(sorted(connection.live)));
      throw error;
    });
    const runsAfter = await Promise.all(connections.map(async (connection) => (await state(connection)).sync!.runCount));
    const syncs = runsAfter.reduce((sum, runs, index) => sum + runs - runsBefore[index]!, 0);
    expect(syncs).toBeGreaterThanOrEqual(connections.length);
    expect(syncs).toBeLessThanOrEqual(unique);
    const rows = (await Promise.all(connections.map(stored))).flat();
    expect(new Set(rows.map(([id]) => id)).size).toBe(rows.length);

    recordFault({
      fault: 'webhook storm: duplicate and out-of-order notifications (Google push, Graph, Airbnb)',
      injected: sent.length,
      outcomes: {
        distinct_notifications: unique,
        duplicates: sent.length - unique,
        answered_503_then_redelivered: retried,
        deliveries_recorded: recorded,
        signals_to_workflows: signals.reduce((sum, count) => sum + count, 0),
        syncs_run: syncs,
        stored_rows: rows.length,
        rows_differing_from_provider: 0,
      },
      invariant: 'each notification reaches its workflow exactly once; stored data equals the provider\'s, no row twice, none missing',
    });
    expect(recorded).toBe(unique);
  });

  it('leaves no secret in plaintext in the database, the Temporal histories or the api-server log', async () => {
    await expectNoSecretLeft('webhook storm', platform, {
      logs: [apiLog.text],
      ownSecrets: sessionTokens,
      providerSecrets: [...google.issuedSecrets(), ...microsoft.issuedSecrets(), ...airbnb.issuedSecrets()],
    });
  });
});

/** Fisher-Yates with Math.random: the order differs from run to run, as a provider's does. */
function shuffle<T>(items: T[]): T[] {
  for (let index = items.length - 1; index > 0; index--) {
    const other = Math.floor(Math.random() * (index + 1));
    [items[index], items[other]] = [items[other]!, items[index]!];
  }
  return items;
}
