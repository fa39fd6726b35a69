import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { startFakeAirbnb, type FakeAirbnb } from '../../fakes/airbnb';
import type { FakeChannel } from '../../fakes/google-push';
import { registerSearchAttributes } from '../../worker/search-attributes';
import { statusQuery, syncRequestSignal, type ConnectionState } from '../../workflows/connection-messages';
import { AIRBNB_TEST_CLIENT, AIRBNB_WEBHOOK_SECRET, airbnbEnvironment, connectAirbnb, storedAirbnbReservations } from '../helpers/airbnb';
import { eventually } from '../helpers/eventually';
import { connectGoogleAccount, liveChannelsOf } from '../helpers/google-calendar';
import { GOOGLE_TEST_CLIENT, startTestPlatform, type TestPlatform } from '../helpers/platform';
import { LogCapture } from '../helpers/secret-scan';
import { recordFault } from './fault-ledger';
import { expectNoSecretLeft } from './harness/secret-scan-after-run';
import { startPersistentTemporal, startPrivatePostgres, type RestartableDependency } from './harness/restartable-dependencies';

const GOOGLE_ACCOUNTS = 6;
const AIRBNB_HOSTS = 4;
// Tokens this short are refreshed every half minute or so: each outage meets refreshes as well as syncs,
// and every connection refreshes again soon after the dependency is back.
const ACCESS_TOKEN_LIFETIME_SECONDS = 60;

interface Tracked {
  provider: 'google-calendar' | 'airbnb';
  connectionId: string;
  workflowId: string;
  sessionToken: string;
  /** What the provider holds, as the test changed it: Google event titles, or Airbnb confirmation codes. */
  expected: Set<string>;
  google?: { account: string; channel: FakeChannel; eventIds: string[] };
  airbnb?: { userId: string; listingId: number };
}

/** An answer of the api-server while a dependency was down. */
interface Probe {
  what: string;
  status: number;
  /** The request cannot be served without the dependency that is down (else it may well succeed). */
  needsIt: boolean;
}

/**
 * PostgreSQL and the Temporal dev server each restarted under a running platform (api-server and worker
 * in this process) whose connections are refreshing and syncing: every workflow resumes, every token
 * keeps being refreshed, every change made at the providers meanwhile arrives once, and while a
 * dependency is down the API answers 503 (never 500) and readiness names the dependency.
 */
describe('dependencies restarted in the middle of a run', () => {
  let postgres: RestartableDependency & { url: string };
  let temporalServer: RestartableDependency & { address: string };
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let airbnb: FakeAirbnb;
  let platform: TestPlatform;
  const connections: Tracked[] = [];
  const probes: Probe[] = [];
  const apiLog = new LogCapture();
  const sessionTokens: string[] = [];

  beforeAll(async () => {
    const cli = inject('temporalCliPath');
    if (!cli) throw new Error('the chaos run needs the temporal CLI (see scripts/temporal-binaries.ts)');
    [postgres, temporalServer] = await Promise.all([startPrivatePostgres(), startPersistentTemporal(cli)]);
    temporal = await TestWorkflowEnvironment.createFromExistingServer({ address: temporalServer.address });
    await registerSearchAttributes(temporal.connection, 'default');
    google = await startFakeGoogle({ ...GOOGLE_TEST_CLIENT, accessTokenLifetimeSeconds: ACCESS_TOKEN_LIFETIME_SECONDS });
    airbnb = await startFakeAirbnb({ ...AIRBNB_TEST_CLIENT, accessTokenLifetimeSeconds: ACCESS_TOKEN_LIFETIME_SECONDS, webhook: { secret: AIRBNB_WEBHOOK_SECRET } });
    platform = await startTestPlatform({ temporal, google, environment: { ...airbnbEnvironment(airbnb), LOG_LEVEL: 'debug' }, logDestination: apiLog, databaseServerUrl: postgres.url });

    for (let index = 0; index < GOOGLE_ACCOUNTS; index++) {
      const account = `31000000000000000000${index}`;
      const eventIds = [google.calendar(account).add({ summary: `g${index}-before`, start: '2031-03-01', end: '2031-03-02' })];
      const connected = await connectGoogleAccount(platform, google, `restart.g${index}@example.com`, account);
      connections.push({ provider: 'google-calendar', ...connected, expected: new Set([`g${index}-before`]), google: { account, channel: undefined as unknown as FakeChannel, eventIds } });
    }
    for (let index = 0; index < AIRBNB_HOSTS; index++) {
      const { sessionToken } = await platform.signUp(`restart.a${index}@example.com`);
      const host = airbnb.createHost([`Restart Flat ${index}`]);
      const listingId = host.listings[0]!.id;
      const reservation = airbnb.createReservation({ listingId, startDate: '2031-04-01', endDate: '2031-04-03' });
      const connected = await connectAirbnb(platform, sessionToken);
      connections.push({ provider: 'airbnb', ...connected, sessionToken, expected: new Set([reservation.confirmation_code]), airbnb: { userId: host.userId, listingId } });
    }
    await eventually(async () => (await Promise.all(connections.map((connection) => state(connection)))).every((current) => current.status === 'active' && (current.sync?.runCount ?? 0) >= 1), 60_000, 'every connection active and synced once').catch(async (error) => {
      console.error(JSON.stringify(await Promise.all(connections.map((connection) => state(connection)))));
      throw error;
    });
    for (const connection of connections) {
      if (connection.google) connection.google.channel = liveChannelsOf(google, connection.google.account)[0]!;
    }
    await eventually(async () => (await Promise.all(connections.map(holdsProviderData))).every(Boolean), 30_000, 'the first syncs stored');
  });

  afterAll(async () => {
    await platform?.close();
    await temporal?.teardown();
    await temporalServer?.destroy();
    await postgres?.destroy();
    await google?.close();
    await airbnb?.close();
  });

  const state = (connection: Tracked): Promise<ConnectionState> => platform.client.workflow.getHandle(connection.workflowId).query(statusQuery);

  async function holdsProviderData(connection: Tracked): Promise<boolean> {
    const stored = connection.provider === 'airbnb'
      ? (await storedAirbnbReservations(platform, connection.connectionId)).map((row) => row.externalId)
      : await platform.db.anyFirst(sql.type(z.object({ title: z.string() }))`SELECT coalesce(title, '') AS title FROM calendar_events WHERE connection_id = ${connection.connectionId}`);
    return stored.length === connection.expected.size && stored.every((item) => connection.expected.has(item));
  }

  /** A change at the provider, and the notification it sends (which fails while we are down; the provider redelivers). */
  async function changeAtProvider(connection: Tracked, label: string): Promise<() => Promise<number>> {
    if (connection.google) {
      const title = `${label}-${connection.connectionId.slice(0, 8)}`;
      connection.google.eventIds.push(google.calendar(connection.google.account).add({ summary: title, start: '2031-05-01', end: '2031-05-02' }));
      connection.expected.add(title);
      const channelId = connection.google.channel.id;
      const [delivery] = (await google.notify(channelId)).filter((sent) => sent.state === 'exists');
      probes.push({ what: 'google push notification', status: delivery!.status, needsIt: true });
      return async () => (await google.redeliver(channelId, delivery!.messageNumber)).status;
    }
    const { userId, listingId } = connection.airbnb!;
    const reservation = airbnb.createReservation({ listingId, startDate: '2031-06-01', endDate: '2031-06-04', guestFirstName: label });
    connection.expected.add(reservation.confirmation_code);
    const sent = await airbnb.sendReservationEvent({ userId, type: 'reservation.created', confirmationCode: reservation.confirmation_code });
    probes.push({ what: 'airbnb webhook', status: sent.deliveries[0]!.status, needsIt: true });
    return async () => (await airbnb.sendReservationEvent({ userId, type: 'reservation.created', eventId: sent.eventId })).deliveries[0]!.status;
  }

  /** What users get from the api-server now; each answer is kept as a probe. */
  async function probeApi(down: 'database' | 'temporal'): Promise<void> {
    const [someone] = connections;
    const requests: Array<[string, () => Promise<Response>]> = [
      ['connection status', () => fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/status`, { headers: { authorization: `Bearer ${someone!.sessionToken}` } })],
      ['connect start', () => fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/auth`, { headers: { authorization: `Bearer ${someone!.sessionToken}`, accept: 'application/json' } })],
      ['sign-in', () => fetch(`${platform.apiUrl}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'restart.g0@example.com', password: 'correct horse battery staple' }) })],
    ];
    for (const [what, request] of requests) {
      const response = await request();
      await response.arrayBuffer();
      // Only the database serves these; the status says what it can without the workflow.
      probes.push({ what, status: response.status, needsIt: down === 'database' });
    }
  }

  async function readiness(): Promise<{ status: number; checks: Record<string, string> }> {
    const response = await fetch(`${platform.apiUrl}/readyz`);
    return { status: response.status, checks: ((await response.json()) as { checks: Record<string, string> }).checks };
  }

  /** Every connection's refresh count once it has gone past `before`: the workflows refresh again. */
  async function refreshedSince(before: Map<string, number>): Promise<boolean> {
    const states = await Promise.all(connections.map(async (connection) => [connection, await state(connection)] as const));
    return states.every(([connection, current]) => current.status === 'active' && current.refreshCount > before.get(connection.workflowId)!);
  }

  async function refreshCounts(): Promise<Map<string, number>> {
    return new Map(await Promise.all(connections.map(async (connection) => [connection.workflowId, (await state(connection)).refreshCount] as const)));
  }

  /** Restarts `dependency` while refreshes and syncs run, and checks what the API said meanwhile. */
  async function restart(name: 'database' | 'temporal', dependency: RestartableDependency, whileDown: () => Promise<void>) {
    const countsBefore = await refreshCounts();
    const probesBefore = probes.length;
    await dependency.stop();
    const ready = await readiness();
    expect(ready.status).toBe(503);
    expect(ready.checks[name]).toMatch(/^failed: /);
    expect(Object.entries(ready.checks).filter(([check]) => check !== name).every(([, result]) => result === 'ok')).toBe(true);
    await probeApi(name);
    const redeliveries = await Promise.all(connections.map((connection) => changeAtProvider(connection, `${name}-down`)));
    await whileDown();
    await dependency.start();
    await eventually(async () => (await readiness()).status === 200, 30_000, `readiness after the ${name} restart`);
    // The providers deliver again what we did not take; a later notification of each kind counts as well.
    const redelivered = await Promise.all(redeliveries.map((redeliver) => redeliver()));
    expect(redelivered.every((status) => status === 200)).toBe(true);
    await eventually(() => refreshedSince(countsBefore), 90_000, `every connection refreshed after the ${name} restart`);
    await eventually(async () => (await Promise.all(connections.map(holdsProviderData))).every(Boolean), 60_000, `every change made during the ${name} outage stored once`);
    const answered = probes.slice(probesBefore);
    expect(answered.filter((probe) => probe.status >= 500 && probe.status !== 503)).toEqual([]);
    expect(answered.filter((probe) => probe.needsIt && probe.status !== 503)).toEqual([]);
    return answered;
  }

  it('PostgreSQL restarted: the API answers 503 naming the database, and every workflow resumes with nothing lost', async () => {
    const answered = await restart('database', postgres, async () => {
      // Syncs (each starting with a refresh) come due while the database is away: wait until each fails on it.
      await Promise.all(connections.map((connection) => platform.client.workflow.getHandle(connection.workflowId).signal(syncRequestSignal, { reason: 'scheduled', full: false })));
      await eventually(async () => {
        const described = await Promise.all(connections.map((connection) => platform.client.workflow.getHandle(connection.workflowId).describe()));
        return described.every((workflow) => (workflow.raw.pendingActivities ?? []).some((activity) => (activity.attempt ?? 0) >= 2));
      }, 60_000, 'an activity of every connection failing on the database');
    });
    recordFault({
      fault: 'PostgreSQL restarted during refreshes and syncs',
      injected: 1,
      outcomes: { ...countAnswers(answered), connections_active_after: connections.length },
      invariant: 'while the database is down the API answers 503 and readiness names it; afterwards every workflow resumes, every token is refreshed, every change is stored once',
    });
  });

  it('Temporal restarted: the API answers 503 naming Temporal, and every workflow resumes from its persisted history', async () => {
    // A user finishing a connect while Temporal is away: 503, and the browser's retry of the callback completes it.
    let callback: { url: string; sessionToken: string; account: string } | undefined;
    const answered = await restart('temporal', temporalServer, async () => {
      const account = '310000000000000000099';
      const { sessionToken } = await platform.signUp('restart.late@example.com');
      sessionTokens.push(sessionToken);
      const auth = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/auth`, { headers: { authorization: `Bearer ${sessionToken}` }, redirect: 'manual' });
      google.signInAs(account);
      const consent = await fetch(auth.headers.get('location')!, { redirect: 'manual' }).finally(() => google.signInAs(undefined));
      callback = { url: consent.headers.get('location')!, sessionToken, account };
      const refused = await fetch(callback.url, { headers: { authorization: `Bearer ${sessionToken}` } });
      probes.push({ what: 'connect callback', status: refused.status, needsIt: true });
    });
    const retried = await fetch(callback!.url, { headers: { authorization: `Bearer ${callback!.sessionToken}` } });
    expect(retried.status).toBe(202);
    const { workflowId } = (await retried.json()) as { workflowId: string };
    await eventually(async () => (await platform.client.workflow.getHandle(workflowId).query(statusQuery)).status === 'active', 30_000, 'the late connection active');
    const described = await Promise.all(connections.map((connection) => platform.client.workflow.getHandle(connection.workflowId).describe()));
    expect(described.map((workflow) => workflow.status.name)).toEqual(connections.map(() => 'RUNNING'));
    recordFault({
      fault: 'Temporal dev server restarted during refreshes and syncs',
      injected: 1,
      outcomes: { ...countAnswers(answered), connections_active_after: connections.length + 1 },
      invariant: 'while Temporal is down the API answers 503 and readiness names it; afterwards every workflow resumes from its persisted history with nothing lost',
    });
  });

  it('leaves no secret in plaintext in the database, the Temporal histories or the api-server log', async () => {
    await expectNoSecretLeft('PostgreSQL and Temporal restarted', platform, {
      logs: [apiLog.text],
      ownSecrets: [...connections.map((connection) => connection.sessionToken), ...sessionTokens],
      providerSecrets: [...google.issuedSecrets(), ...airbnb.issuedSecrets()],
    });
  });
});

function countAnswers(answered: Probe[]): Record<string, number> {
  const count = (matches: (status: number) => boolean) => answered.filter((probe) => matches(probe.status)).length;
  return { answered_503: count((status) => status === 503), answered_other_5xx: count((status) => status >= 500 && status !== 503), served_without_it: count((status) => status < 500) };
}
