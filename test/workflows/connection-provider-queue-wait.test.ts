import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { WorkflowUpdateStage, type WorkflowHandle } from '@temporalio/client';
import temporalProto from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Activities } from '../../activities';
import { PRIORITY_DISPATCH_ARGS } from '../../scripts/temporal-dynamic-config';
import { WORKFLOWS_PATH } from '../../worker/worker';
import type { connectionWorkflow } from '../../workflows/connection';
import { authorizeSignal, refreshNowUpdate, statusQuery, type RefreshPolicy } from '../../workflows/connection-messages';
import { eventually } from '../helpers/eventually';
import { activityBacklog, startTemporalDevServer } from '../helpers/temporal';

const POLICY: RefreshPolicy = { marginSeconds: 300, jitterSeconds: 0, marginFraction: 0.2, minMarginSeconds: 60, triesBeforeExpiry: 6 };
const DAY_MS = 24 * 60 * 60_000;
/** The user's first token: the setup may wait in the queue until only the 30 s the activities require are left (about 10 s). */
const SHORT_TOKEN_MS = 40_000;
const HOLD_HEARTBEAT_MS = 1000;

type Start = { name: keyof Activities; connectionId: string; tokenVersion?: number };

/**
 * Issue 12: a worker that falls behind must not start provider work with a token that expired while the
 * work waited in the queue, nor spend a slot on an attempt that can only refuse. The worker has one
 * activity slot; another connection's refresh holds it while the user's setup waits, until the setup's
 * queue timeout has passed. Needs the real dev server (priorities, as in production).
 */
describe('connection workflow: provider work that waits in the queue', () => {
  let temporal: TestWorkflowEnvironment;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = `connection-queue-wait-${randomUUID()}`;
  const starts: Start[] = [];
  let releaseSlot!: () => void;
  const slotReleased = new Promise<void>((resolve) => (releaseSlot = resolve));
  let holder: WorkflowHandle | undefined;
  let userConnectionId: string | undefined;

  const startsOf = (name: Start['name'], connectionId?: string) =>
    starts.filter((start) => start.name === name && (connectionId === undefined || start.connectionId === connectionId));

  beforeAll(async () => {
    temporal = await startTemporalDevServer({ extraArgs: PRIORITY_DISPATCH_ARGS });
    const activities: Partial<Activities> = {
      exchangeAuthorizationCode: async ({ connectionId }) => {
        starts.push({ name: 'exchangeAuthorizationCode', connectionId });
        if (connectionId !== userConnectionId) return { tokenVersion: 1, accessTokenExpiresAt: Date.now() + DAY_MS };
        // The slot this exchange frees goes to the holder's refresh, queued before the setup is.
        await holder!.startUpdate(refreshNowUpdate, { args: [], waitForStage: WorkflowUpdateStage.ACCEPTED });
        await eventually(async () => (await backlog()) === 1, 30_000, "the holder's refresh on the task queue");
        return { tokenVersion: 1, accessTokenExpiresAt: Date.now() + SHORT_TOKEN_MS };
      },
      refreshConnectionTokens: async ({ connectionId, expectedVersion }) => {
        starts.push({ name: 'refreshConnectionTokens', connectionId });
        if (connectionId !== userConnectionId) {
          const context = Context.current();
          const beat = setInterval(() => context.heartbeat(), HOLD_HEARTBEAT_MS);
          await slotReleased.finally(() => clearInterval(beat));
        }
        return { tokenVersion: expectedVersion + 1, accessTokenExpiresAt: Date.now() + DAY_MS };
      },
      setUpConnection: async ({ connectionId }) => {
        starts.push({ name: 'setUpConnection', connectionId });
        return { renewSubscriptionsAt: null, syncIntervalSeconds: null };
      },
      revokeUnkeptTokens: async () => undefined,
    };
    worker = await Worker.create({ connection: temporal.nativeConnection, taskQueue, workflowsPath: WORKFLOWS_PATH, activities, maxConcurrentActivityTaskExecutions: 1 });
    running = worker.run();
  });

  afterAll(async () => {
    releaseSlot();
    if (worker) {
      worker.shutdown();
      await running;
    }
    await temporal?.teardown();
  });

  async function connect(connectionId: string) {
    return temporal.client.workflow.signalWithStart<typeof connectionWorkflow, [{ authorizationId: string }]>('connectionWorkflow', {
      workflowId: `connection:airbnb:${connectionId}`,
      taskQueue,
      args: [{ connectionId, provider: 'airbnb', userId: randomUUID(), refreshPolicy: POLICY }],
      signal: authorizeSignal,
      signalArgs: [{ authorizationId: randomUUID() }],
    });
  }

  const backlog = () => activityBacklog(temporal, taskQueue);

  async function setUpTimedOutInQueue(handle: WorkflowHandle): Promise<boolean> {
    const { TIMEOUT_TYPE_SCHEDULE_TO_START } = temporalProto.temporal.api.enums.v1.TimeoutType;
    const { events } = await handle.fetchHistory();
    return (events ?? []).some((event) => event.activityTaskTimedOutEventAttributes?.failure?.timeoutFailureInfo?.timeoutType === TIMEOUT_TYPE_SCHEDULE_TO_START);
  }

  it('a setup that waited until its token was nearly spent times out unstarted; the connection refreshes, then sets up', { timeout: 120_000 }, async () => {
    const holderId = randomUUID();
    holder = await connect(holderId);
    await eventually(async () => (await holder!.query(statusQuery)).providerSetUpDone === true, 30_000, "the holder's setup");

    userConnectionId = randomUUID();
    const user = await connect(userConnectionId);
    await eventually(() => startsOf('refreshConnectionTokens', holderId).length === 1, 30_000, "the holder's refresh in the slot");
    // The premise: the slot the exchange freed went to the holder's refresh, queued before the setup was.
    expect(startsOf('setUpConnection', userConnectionId), 'the setup took the slot before the holder').toHaveLength(0);
    await eventually(() => setUpTimedOutInQueue(user), 60_000, "the user's setup timed out in the queue");
    expect(startsOf('setUpConnection', userConnectionId)).toHaveLength(0);
    // Nothing failed: the worker is behind, which is no error of the connection's.
    const waiting = await user.query(statusQuery);
    expect({ providerError: waiting.providerError, providerSetUpDone: waiting.providerSetUpDone }).toEqual({ providerError: undefined, providerSetUpDone: undefined });

    releaseSlot();
    await eventually(async () => (await user.query(statusQuery)).providerSetUpDone === true, 30_000, "the user's setup");
    const userStarts = starts.filter((start) => start.connectionId === userConnectionId).map((start) => start.name);
    // The setup ran once, with the refreshed token: the refresh came first.
    expect(userStarts).toEqual(['exchangeAuthorizationCode', 'refreshConnectionTokens', 'setUpConnection']);
    const done = await user.query(statusQuery);
    expect({ status: done.status, tokenVersion: done.tokenVersion, providerError: done.providerError }).toEqual({ status: 'active', tokenVersion: 2, providerError: undefined });
  });
});
