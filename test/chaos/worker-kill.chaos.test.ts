import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { TokenEndpointFaults } from '../../fakes/token-endpoint-faults';
import { readConnectionSecrets } from '../../db/queries/connections';
import { connectionColumn } from '../../db/encrypted-columns';
import { freshTokenUpdate } from '../../workflows/connection-messages';
import { connectGoogleCalendar, fakeGoogleEnvironment, GOOGLE_TEST_CLIENT, startTestPlatform, type TestPlatform } from '../helpers/platform';
import { startTemporalDevServer } from '../helpers/temporal';
import { eventually } from '../helpers/eventually';
import { recordFault } from './fault-ledger';
import { startWorkerProcess, type ChaosWorkerProcess } from './harness/worker-process';
import { inBatches, signedInUsers } from './harness/users';
import { lostRotation, refreshTokensUsedTwice } from './harness/refresh-records';

const CONNECTIONS = 500;
const KILLS = 10;
/** Short enough that every connection refreshes about every ninety seconds while the workers are being killed. */
const ACCESS_TOKEN_LIFETIME_SECONDS = 150;
const SYNC_INTERVAL_SECONDS = 120;
/** What a product caller asks the owner for before it calls the provider with the stored token. */
const CALLER_MIN_VALIDITY_SECONDS = 10;
/**
 * A refresh the provider carried out but whose tokens were never stored, followed this soon by a
 * SIGKILL, was lost to the kill: the new refresh token existed only in the dead process.
 */
const KILL_WINDOW_MS = 15_000;
const EXACT_REASON = 'refresh_token_lost_in_flight';
const PROVIDER_WORK_ACTIVITIES = new Set(['syncConnection', 'setUpConnection', 'renewConnectionSubscriptions']);

/**
 * Issue 11, "Worker killed": the production worker process is SIGKILLed again and again while 500
 * connections refresh short-lived tokens at a fake Google that rotates the refresh token on every
 * refresh and refuses the old one from then on. Each kill lands while a fresh worker is already
 * polling, so work in flight on the killed one is simply lost, as when a machine dies.
 */
describe('worker SIGKILL during a refresh storm', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  const faults = new TokenEndpointFaults({ clock: Date.now });
  const workers: ChaosWorkerProcess[] = [];

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle({ ...GOOGLE_TEST_CLIENT, accessTokenLifetimeSeconds: ACCESS_TOKEN_LIFETIME_SECONDS, faults });
    google.switches.rotateRefreshTokens = true;
    platform = await startTestPlatform({ temporal, google, worker: false, environment: { GOOGLE_CALENDAR_SYNC_INTERVAL_SECONDS: String(SYNC_INTERVAL_SECONDS) } });
  });

  afterAll(async () => {
    await Promise.all(workers.map((worker) => worker.kill()));
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  function workerEnvironment(): Record<string, string> {
    const { config } = platform;
    return {
      APP_ENV: 'test',
      LOG_LEVEL: 'error',
      DATABASE_URL: config.databaseUrl!,
      PUBLIC_BASE_URL: config.http.publicBaseUrl,
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: config.temporal.namespace,
      TEMPORAL_TASK_QUEUE: config.temporal.taskQueue,
      INTEGRATION_ENCRYPTION_KEY: config.encryption.activeKey!,
      TEMPORAL_PAYLOAD_KEY: config.payloadEncryption.activeKey!,
      GOOGLE_CALENDAR_SYNC_INTERVAL_SECONDS: String(SYNC_INTERVAL_SECONDS),
      ...fakeGoogleEnvironment(google),
    };
  }

  async function startWorker(): Promise<ChaosWorkerProcess> {
    const worker = await startWorkerProcess(workerEnvironment());
    workers.push(worker);
    await worker.ready();
    return worker;
  }

  const statusCounts = async () =>
    Object.fromEntries(
      (await platform.db.any(sql.type(z.object({ status: z.string(), count: z.number() }))`
        SELECT status::text, count(*)::int AS count FROM integration_connections GROUP BY status`)).map((row) => [row.status, row.count]),
    ) as Record<string, number>;

  /**
   * Each connection that is not active: its status, why (the reason its needs_reauth was audited with),
   * and, when the provider rotated its stored refresh token away in a refresh whose answer never got
   * stored, how long before the next SIGKILL that refresh was carried out.
   */
  async function notActive(killedAt: readonly number[]) {
    const rows = await platform.db.any(sql.type(z.object({ id: z.string(), status: z.string(), refreshTokenEnc: z.string().nullable(), reason: z.string().nullable() }))`
      SELECT c.id, c.status::text, c.refresh_token_enc AS "refreshTokenEnc",
             (SELECT details->>'reason' FROM audit_log a WHERE a.connection_id = c.id AND a.action = 'IntegrationNeedsReauth' ORDER BY a.id DESC LIMIT 1) AS reason
      FROM integration_connections c WHERE c.status <> 'active'`);
    return rows.map((row) => {
      const stored = row.refreshTokenEnc ? platform.crypto.decrypt(row.refreshTokenEnc, connectionColumn(row.id, 'refresh_token_enc')) : undefined;
      const lostAt = stored === undefined ? undefined : lostRotation(faults.refreshes, stored);
      const nextKill = lostAt === undefined ? undefined : killedAt.find((at) => at >= lostAt);
      return { status: row.status, reason: row.reason, rotationLostMsBeforeKill: lostAt === undefined || nextKill === undefined ? null : nextKill - lostAt };
    });
  }

  /** Active connections whose stored refresh token Google no longer honours: lost without anyone knowing. */
  async function silentlyLost(): Promise<number> {
    const live = new Set(google.liveRefreshTokens());
    const rows = await platform.db.any(sql.type(z.object({ id: z.string(), refreshTokenEnc: z.string() }))`
      SELECT id, refresh_token_enc AS "refreshTokenEnc" FROM integration_connections WHERE status = 'active'`);
    return rows.filter((row) => !live.has(platform.crypto.decrypt(row.refreshTokenEnc, connectionColumn(row.id, 'refresh_token_enc')))).length;
  }

  /**
   * Connections with a token activity (code exchange, refresh, needs_reauth bookkeeping) whose attempt
   * started before `at` and has not finished: attempts the SIGKILL cut off, waiting for their heartbeat
   * timeout and retry. Only connections not refreshed since can have one. Syncs and webhook setup, with
   * their minutes-long timeouts, hold no token and are left to finish on their own.
   */
  async function attemptsCutOffBefore(at: number): Promise<number> {
    const candidates = await platform.db.anyFirst(sql.type(z.object({ workflowId: z.string() }))`
      SELECT workflow_id AS "workflowId" FROM integration_connections
      WHERE status = 'active' AND (last_refreshed_at IS NULL OR last_refreshed_at <= ${sql.timestamp(new Date(at))})`);
    const cutOff = await inBatches(candidates, 16, async (workflowId) => {
      const { raw } = await platform.client.workflow.getHandle(workflowId).describe();
      return (raw.pendingActivities ?? []).some(
        (activity) => !PROVIDER_WORK_ACTIVITIES.has(activity.activityType?.name ?? '') && Number(activity.lastStartedTime?.seconds ?? 0) * 1000 < at,
      );
    });
    return cutOff.filter(Boolean).length;
  }

  /**
   * A product caller: asks the connection's owner for a token valid long enough, reads it from the
   * database, and calls Google Calendar with it, until stopped.
   */
  function callGoogleUntilStopped(connections: Array<{ connectionId: string; workflowId: string }>, stopped: () => boolean) {
    const counts = { updates: 0, updatesRefused: 0, apiCalls: 0 };
    const lane = async (offset: number) => {
      for (let index = offset; !stopped(); index += 7) {
        const { connectionId, workflowId } = connections[index % connections.length]!;
        try {
          await platform.client.workflow.getHandle(workflowId).executeUpdate(freshTokenUpdate, { args: [{ minValiditySeconds: CALLER_MIN_VALIDITY_SECONDS }] });
          counts.updates += 1;
        } catch {
          // A refused or interrupted update hands out no token, so nothing is called with one.
          counts.updatesRefused += 1;
          continue;
        }
        const { accessTokenEnc } = await readConnectionSecrets(platform.db, connectionId);
        const accessToken = platform.crypto.decrypt(accessTokenEnc!, connectionColumn(connectionId, 'access_token_enc'));
        await fetch(`${google.calendarApiUrl}/users/me/calendarList`, { headers: { authorization: `Bearer ${accessToken}` } });
        counts.apiCalls += 1;
      }
    };
    const running = Promise.all(Array.from({ length: 7 }, (_, offset) => lane(offset)));
    return { counts, finished: running };
  }

  it('keeps every connection whose tokens it holds, never uses a refresh token twice, and never calls Google with an expired token', { timeout: 480_000 }, async () => {
    let worker = await startWorker();
    const users = await signedInUsers(platform.db, CONNECTIONS);
    const connections = await inBatches(users, 12, async ({ sessionToken }) => {
      const connected = await connectGoogleCalendar(platform, sessionToken);
      if (connected.status !== 202) throw new Error(`callback answered ${connected.status}`);
      return connected.body as { connectionId: string; workflowId: string };
    });
    await eventually(async () => (await statusCounts()).active === CONNECTIONS, 120_000, 'every connection active before the storm');

    let stop = false;
    const callers = callGoogleUntilStopped(connections, () => stop);
    const killedAt: number[] = [];
    for (let kill = 0; kill < KILLS; kill++) {
      const next = await startWorker();
      await worker.kill();
      killedAt.push(Date.now());
      worker = next;
    }
    const lastKillAt = killedAt.at(-1)!;
    stop = true;
    await callers.finished;

    // Every attempt the kills cut off has been retried on the surviving worker and finished.
    await eventually(async () => (await attemptsCutOffBefore(lastKillAt)) === 0, 150_000, 'every cut-off attempt retried');

    const statuses = await statusCounts();
    const lost = await notActive(killedAt);
    const refreshes = faults.refreshes;
    const usedTwice = refreshTokensUsedTwice(refreshes);
    const refusedRefreshes = refreshes.filter((refresh) => !refresh.succeeded).length;
    const apiCalls = google.calls.filter((call) => ['calendarList', 'eventsList', 'eventsWatch'].includes(call.endpoint));
    const silent = await silentlyLost();
    const lostToKills = lost.filter((connection) => connection.rotationLostMsBeforeKill !== null && connection.rotationLostMsBeforeKill <= KILL_WINDOW_MS);
    const expiredCalls = apiCalls.filter((call) => call.accessTokenExpired || call.status === 401);
    recordFault({
      fault: `worker SIGKILL during a refresh storm (${CONNECTIONS} connections, Google rotating on every refresh, ${ACCESS_TOKEN_LIFETIME_SECONDS} s access tokens)`,
      injected: KILLS,
      outcomes: {
        active: statuses.active ?? 0,
        needs_reauth_rotation_lost_to_kill: lostToKills.length,
        needs_reauth_exact_reason: lost.filter((connection) => connection.status === 'needs_reauth' && connection.reason === EXACT_REASON).length,
        not_active_other: lost.length - lostToKills.length,
        active_but_refresh_token_dead: silent,
        refreshes: refreshes.length,
        refreshes_refused: refusedRefreshes,
        refresh_tokens_used_twice: usedTwice.length,
        api_calls: apiCalls.length,
        api_calls_with_expired_token: expiredCalls.length,
      },
      invariant: `one writer per credential; crash-safe refresh (a kill between the provider's rotation and our commit ends in needs_reauth "${EXACT_REASON}", never a silent loss); callers only ever get a valid token`,
    });

    // A kill between Google's rotation and our commit takes the only live refresh token with the process:
    // no client can survive that, but it must say so, with the exact reason, and nothing else may be lost.
    expect(lost.filter((connection) => !lostToKills.includes(connection) || connection.status !== 'needs_reauth' || connection.reason !== EXACT_REASON)).toEqual([]);
    expect(statuses.active).toBe(CONNECTIONS - lostToKills.length);
    expect(silent).toBe(0);
    expect(usedTwice).toEqual([]);
    expect(apiCalls.length).toBeGreaterThan(0);
    expect(expiredCalls).toEqual([]);
  });
});
