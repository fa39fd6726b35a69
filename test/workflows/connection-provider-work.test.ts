import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Activities, TokenState } from '../../activities';
import { FailureType } from '../../activities/failure-types';
import { MIN_ACCESS_TOKEN_VALIDITY_MS } from '../../platform/access-token-validity';
import type { connectionWorkflow } from '../../workflows/connection';
import { authorizeSignal, disconnectSignal, providerEventSignal, statusQuery, syncRequestSignal } from '../../workflows/connection-messages';
import { CONNECTION_STATUS, PROVIDER } from '../../workflows/search-attributes';
import { startScriptedWorker, startTimeSkippingServer, type ScriptedWorker } from '../helpers/temporal';
import { eventually } from '../helpers/eventually';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const SYNC_INTERVAL_SECONDS = 3600;

/** `tokenExpiresAt`: when the access token the connection held at the call expires. */
type Call = { name: string; input: unknown; at: number; tokenExpiresAt: number | undefined };

/**
 * The connection workflow's provider work (setup, renewals, syncs, stopping subscriptions) against
 * scripted activities: the workflow's own collaborators. The providers' end-to-end tests run the
 * real activities; this one pins down the orchestration rules they rely on.
 */
describe('connection workflow: provider work', () => {
  let temporal: TestWorkflowEnvironment;
  let worker: ScriptedWorker;
  let calls: Call[];
  let script: {
    syncFailure?: () => ApplicationFailure;
    stopFailure?: () => ApplicationFailure;
    refreshFailure?: () => ApplicationFailure;
    renewAtOffsetMs: number;
    tokenLifetimeMs: number;
    syncsHeldUntil?: Promise<void>;
  };
  let tokenExpiresAt: number | undefined;
  let syncsInFlight = 0;
  let maxSyncsInFlight = 0;

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    const now = () => temporal.currentTimeMs();
    const record = async (name: string, input: unknown) => {
      calls.push({ name, input, at: await now(), tokenExpiresAt });
    };
    const tokens = async (): Promise<TokenState> => {
      tokenExpiresAt = (await now()) + script.tokenLifetimeMs;
      return { tokenVersion: calls.length, accessTokenExpiresAt: tokenExpiresAt };
    };
    const activities: Partial<Activities> = {
      exchangeAuthorizationCode: async (input) => (await record('exchange', input), tokens()),
      refreshConnectionTokens: async (input) => {
        await record('refresh', input);
        if (script.refreshFailure) throw script.refreshFailure();
        return tokens();
      },
      // These exchanges set nothing aside to revoke.
      revokeUnkeptTokens: async () => undefined,
      setUpConnection: async (input) => {
        await record('setUp', input);
        return { renewSubscriptionsAt: (await now()) + script.renewAtOffsetMs, syncIntervalSeconds: SYNC_INTERVAL_SECONDS };
      },
      renewConnectionSubscriptions: async (input) => {
        await record('renew', input);
        return { renewAt: (await now()) + script.renewAtOffsetMs };
      },
      syncConnection: async (input) => {
        await record('sync', input);
        syncsInFlight += 1;
        maxSyncsInFlight = Math.max(maxSyncsInFlight, syncsInFlight);
        try {
          await script.syncsHeldUntil;
          if (script.syncFailure) throw script.syncFailure();
          return { runId: calls.length, created: 1, updated: 0, deleted: 0, fullResync: false, finishedAt: await now() };
        } finally {
          syncsInFlight -= 1;
        }
      },
      stopConnectionSubscriptions: async (input) => {
        await record('stopSubscriptions', input);
        if (script.stopFailure) throw script.stopFailure();
      },
      abandonConnectionSubscriptions: async (input) => (await record('abandonSubscriptions', input), 1),
      revokeConnectionUpstream: async (input) => (await record('revoke', input), 'revoked' as const),
      wipeDisconnectedConnection: async (input) => void (await record('wipe', input)),
      markConnectionNeedsReauth: async (input) => void (await record('needsReauth', input)),
      markConnectionFailed: async (input) => void (await record('failed', input)),
      auditFailedAuthorization: async (input) => void (await record('failedAuthorization', input)),
    };
    worker = await startScriptedWorker({ temporal, activities, taskQueuePrefix: 'provider-work' });
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.teardown();
  });

  beforeEach(() => {
    calls = [];
    script = { renewAtOffsetMs: 24 * HOUR, tokenLifetimeMs: HOUR };
    tokenExpiresAt = undefined;
    maxSyncsInFlight = 0;
  });

  async function connect() {
    const connectionId = randomUUID();
    const handle = await temporal.client.workflow.signalWithStart<typeof connectionWorkflow, [{ authorizationId: string }]>('connectionWorkflow', {
      workflowId: `connection:google-calendar:${connectionId}`,
      taskQueue: worker.taskQueue,
      args: [{ connectionId, provider: 'google-calendar', userId: randomUUID(), refreshPolicy: { marginSeconds: 300, jitterSeconds: 0 } }],
      signal: authorizeSignal,
      signalArgs: [{ authorizationId: randomUUID() }],
    });
    await until(() => names().includes('sync'));
    return handle;
  }

  const names = () => calls.map((call) => call.name);

  async function until(predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`never happened; calls: ${names().join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it('sets the provider up after the code exchange, syncs at once, then on schedule and renews before subscriptions lapse', async () => {
    const handle = await connect();
    expect(names().slice(0, 3)).toEqual(['exchange', 'setUp', 'sync']);
    expect(calls.find((call) => call.name === 'sync')!.input).toMatchObject({ reason: 'connected', full: false });

    await temporal.sleep(26 * HOUR);
    const syncs = calls.filter((call) => call.name === 'sync');
    const gaps = syncs.slice(1).map((call, index) => call.at - syncs[index]!.at);
    expect(syncs.length).toBeGreaterThanOrEqual(26);
    for (const gap of gaps) expect(gap).toBeLessThanOrEqual(SYNC_INTERVAL_SECONDS * 1000 + MINUTE);
    const renewals = calls.filter((call) => call.name === 'renew');
    expect(renewals).toHaveLength(1);
    expect(renewals[0]!.input).toMatchObject({ reason: 'due' });
    // Every refresh came before its token expired, with syncs in between.
    expect(calls.filter((call) => call.name === 'refresh').length).toBeGreaterThanOrEqual(26);

    const described = await handle.describe();
    expect(described.typedSearchAttributes.get(PROVIDER)).toBe('google-calendar');
    expect(described.typedSearchAttributes.get(CONNECTION_STATUS)).toBe('active');
    await handle.signal(disconnectSignal, { requestedBy: { type: 'system' } });
  });

  it('folds webhook notices that arrive during a sync into one more run, never two at once', async () => {
    const handle = await connect();
    await until(() => syncsInFlight === 0);
    const before = calls.filter((call) => call.name === 'sync').length;
    // The sync is held until every notice has reached the workflow, so they all arrive during it.
    let releaseSyncs!: () => void;
    script.syncsHeldUntil = new Promise((resolve) => (releaseSyncs = resolve));
    await handle.signal(providerEventSignal, { kind: 'changed' });
    await until(() => syncsInFlight === 1);
    for (let notice = 0; notice < 5; notice++) await handle.signal(providerEventSignal, { kind: 'changed' });
    await handle.signal(syncRequestSignal, { reason: 'operator', full: true });
    releaseSyncs();
    // Both runs recorded and nothing left requested: the next sync is the scheduled one.
    await eventually(async () => {
      const state = await handle.query(statusQuery);
      return state.sync?.runCount === before + 2 && state.syncRequest === undefined && state.nextSyncAt! >= (await temporal.currentTimeMs()) + SYNC_INTERVAL_SECONDS * 1000 - MINUTE;
    }, 20_000, 'both runs recorded with no sync left requested');

    const syncs = calls.filter((call) => call.name === 'sync').slice(before);
    expect(syncs).toHaveLength(2);
    expect(syncs[1]!.input).toMatchObject({ full: true });
    expect(maxSyncsInFlight).toBe(1);
    await handle.signal(disconnectSignal, { requestedBy: { type: 'system' } });
  });

  it('renews at once, for the named subscription, when the provider asks for reauthorization', async () => {
    const handle = await connect();
    await handle.signal(providerEventSignal, { kind: 'reauthorization_required', subscriptionId: 'sub-1' });
    await until(() => names().includes('renew'));
    expect(calls.find((call) => call.name === 'renew')!.input).toMatchObject({ reason: 'reauthorization_required', subscriptionId: 'sub-1' });
    await handle.signal(disconnectSignal, { requestedBy: { type: 'system' } });
  });

  it('stops syncing when a sync finds the grant revoked: the connection needs re-authorization', async () => {
    const handle = await connect();
    script.syncFailure = () => ApplicationFailure.nonRetryable('revoked', FailureType.grantRevoked);
    await handle.signal(providerEventSignal, { kind: 'changed' });
    await until(() => names().includes('needsReauth'));
    const syncsThen = calls.filter((call) => call.name === 'sync').length;
    await temporal.sleep(5 * HOUR);
    expect(calls.filter((call) => call.name === 'sync')).toHaveLength(syncsThen);
    expect((await handle.query(statusQuery)).status).toBe('needs_reauth');
    await handle.signal(disconnectSignal, { requestedBy: { type: 'system' } });
  });

  it('sets up a connection that was active before provider work existed, when its run continues as new', async () => {
    const connectionId = randomUUID();
    const expiresAt = (await temporal.currentTimeMs()) + HOUR;
    const handle = await temporal.client.workflow.start<typeof connectionWorkflow>('connectionWorkflow', {
      workflowId: `connection:google-calendar:${connectionId}`,
      taskQueue: worker.taskQueue,
      args: [
        {
          connectionId,
          provider: 'google-calendar',
          userId: randomUUID(),
          refreshPolicy: { marginSeconds: 300, jitterSeconds: 0 },
          // What an unpatched run carried over: an active connection, no provider work.
          carriedState: { status: 'active', tokenVersion: 3, refreshCount: 40, accessTokenExpiresAt: expiresAt, refreshDueAt: expiresAt - 5 * MINUTE },
        },
      ],
    });
    const mine = () => calls.filter((call) => (call.input as { connectionId?: string }).connectionId === connectionId).map((call) => call.name);
    await until(() => mine().includes('sync'));
    expect(mine().slice(0, 2)).toEqual(['setUp', 'sync']);
    await handle.signal(disconnectSignal, { requestedBy: { type: 'system' } });
  });

  it('never calls the provider with an expired token after a failed refresh moved the next refresh past its expiry', async () => {
    script.tokenLifetimeMs = 10 * MINUTE;
    const handle = await connect();
    // An operator must look (our client refused): the workflow tries again after its slow timer, past the expiry.
    script.refreshFailure = () => ApplicationFailure.nonRetryable('invalid_client', FailureType.providerRejected);
    const expiresAt = tokenExpiresAt!;
    await temporal.sleep(10 * MINUTE + 30_000);
    expect((await temporal.currentTimeMs()) > expiresAt).toBe(true);
    const refreshesThen = names().filter((name) => name === 'refresh').length;
    await handle.signal(syncRequestSignal, { reason: 'test', full: false });
    await until(() => names().filter((name) => name === 'refresh').length > refreshesThen || calls.some((call) => call.name === 'sync' && call.at > expiresAt));
    await temporal.sleep(20 * MINUTE);

    const providerCalls = calls.filter((call) => ['setUp', 'renew', 'sync'].includes(call.name));
    for (const call of providerCalls) expect(call.at, `${call.name} at ${call.at}`).toBeLessThan(call.tokenExpiresAt! - MIN_ACCESS_TOKEN_VALIDITY_MS);
    expect(calls.filter((call) => call.name === 'sync' && call.at > expiresAt)).toEqual([]);
    expect((await handle.query(statusQuery)).status).toBe('active');
    await handle.signal(disconnectSignal, { requestedBy: { type: 'system' } });
  });

  it('never renews more often than once a minute, even when the provider grants less than the margin', async () => {
    script.renewAtOffsetMs = -HOUR;
    const handle = await connect();
    await temporal.sleep(10 * MINUTE);
    const renewals = calls.filter((call) => call.name === 'renew');
    expect(renewals.length).toBeGreaterThanOrEqual(5);
    expect(renewals.length).toBeLessThanOrEqual(11);
    await handle.signal(disconnectSignal, { requestedBy: { type: 'system' } });
  });

  it('stops subscriptions before revoking, and forgets them when the provider cannot be reached', async () => {
    const handle = await connect();
    await handle.signal(disconnectSignal, { requestedBy: { type: 'user', id: 'u1' } });
    await handle.result();
    expect(names().slice(-3)).toEqual(['stopSubscriptions', 'revoke', 'wipe']);

    calls = [];
    const second = await connect();
    script.stopFailure = () => ApplicationFailure.nonRetryable('provider refuses', FailureType.providerRejected);
    await second.signal(disconnectSignal, { requestedBy: { type: 'user', id: 'u1' } });
    await second.result();
    expect(names().slice(-4)).toEqual(['stopSubscriptions', 'abandonSubscriptions', 'revoke', 'wipe']);
  });

  it('runs work that found the stored token expired again at once, and other failed work only after a pause', async () => {
    const handle = await connect();
    const syncs = () => calls.filter((call) => call.name === 'sync');
    const failOnce = (failure: ApplicationFailure) => () => ((script.syncFailure = undefined), failure);

    // A retried attempt that started after the token expired: the loop refreshes if it must and goes again.
    script.syncFailure = failOnce(ApplicationFailure.nonRetryable('the stored access token has expired', FailureType.accessTokenExpired));
    const before = syncs().length;
    await handle.signal(syncRequestSignal, { reason: 'test', full: false });
    await until(() => syncs().length === before + 2);
    const [expired, again] = syncs().slice(-2);
    expect(again!.at - expired!.at).toBeLessThan(MINUTE);
    await eventually(async () => (await handle.query(statusQuery)).sync?.lastOutcome === 'succeeded');

    script.syncFailure = failOnce(ApplicationFailure.nonRetryable('the provider is down', FailureType.providerUnavailable));
    await handle.signal(syncRequestSignal, { reason: 'test', full: false });
    await until(() => syncs().length === before + 3);
    await temporal.sleep(10 * MINUTE);
    await until(() => syncs().length === before + 4);
    const [failed, retried] = syncs().slice(-2);
    expect(retried!.at - failed!.at).toBeGreaterThanOrEqual(5 * MINUTE);
    await handle.signal(disconnectSignal, { requestedBy: { type: 'system' } });
    await handle.result();
  });
});
