import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { WorkflowUpdateStage, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Activities } from '../../activities';
import { PRIORITY_DISPATCH_ARGS } from '../../scripts/temporal-dynamic-config';
import { WORKFLOWS_PATH } from '../../worker/worker';
import type { connectionWorkflow } from '../../workflows/connection';
import { authorizeSignal, refreshNowUpdate, statusQuery, type RefreshPolicy } from '../../workflows/connection-messages';
import { eventually } from '../helpers/eventually';
import { activityBacklog, startTemporalDevServer } from '../helpers/temporal';

/** The settings' defaults, as the API hands them to every connection workflow. */
const POLICY: RefreshPolicy = { marginSeconds: 300, jitterSeconds: 60, marginFraction: 0.2, minMarginSeconds: 60, triesBeforeExpiry: 6 };
const BACKGROUND_CONNECTIONS = 8;
/** Every token lives a day: no refresh comes due but those the test asks for. */
const DAY_MS = 24 * 60 * 60_000;
/** Well within the refreshes' heartbeat timeout, so a refresh the test holds is not given up and retried. */
const HOLD_HEARTBEAT_MS = 1000;

type Start = { name: keyof Activities; connectionId: string };

/** A promise the test opens when it has seen what it waits for. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

async function heldUntil(opened: Promise<void>): Promise<void> {
  const context = Context.current();
  const beat = setInterval(() => context.heartbeat(), HOLD_HEARTBEAT_MS);
  try {
    await opened;
  } finally {
    clearInterval(beat);
  }
}

/**
 * Issue 12: a worker busy with background refreshes takes a user's code exchange and first setup
 * before the refreshes queued ahead of them. The worker has one activity slot, held by a refresh
 * until the backlog and the user's exchange are on the task queue, so the order the slot takes them
 * in is the dispatch order. Needs the real dev server: the time-skipping server dispatches without priorities.
 */
describe('connection workflow: task priorities', () => {
  let temporal: TestWorkflowEnvironment;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = `connection-priorities-${randomUUID()}`;
  /** The order in which the worker's single activity slot started activities. */
  const starts: Start[] = [];
  const firstRefresh = gate();
  const userSetUpQueued = gate();
  let userConnectionId: string | undefined;

  const startsOf = (name: Start['name'], connectionId?: string) =>
    starts.filter((start) => start.name === name && (connectionId === undefined || start.connectionId === connectionId));

  beforeAll(async () => {
    temporal = await startTemporalDevServer({ extraArgs: PRIORITY_DISPATCH_ARGS });
    const started = (name: Start['name'], connectionId: string) => void starts.push({ name, connectionId });
    const activities: Partial<Activities> = {
      exchangeAuthorizationCode: async ({ connectionId }) => {
        started('exchangeAuthorizationCode', connectionId);
        return { tokenVersion: 1, accessTokenExpiresAt: Date.now() + DAY_MS };
      },
      refreshConnectionTokens: async ({ connectionId, expectedVersion }) => {
        started('refreshConnectionTokens', connectionId);
        if (startsOf('refreshConnectionTokens').length === 1) await heldUntil(firstRefresh.opened);
        // The slot the user's exchange frees goes to a refresh before the user's workflow has scheduled
        // the setup; like a provider call, that refresh lasts longer than the workflow task does.
        else if (userConnectionId && startsOf('exchangeAuthorizationCode', userConnectionId).length > 0) await heldUntil(userSetUpQueued.opened);
        return { tokenVersion: expectedVersion + 1, accessTokenExpiresAt: Date.now() + DAY_MS };
      },
      setUpConnection: async ({ connectionId }) => {
        started('setUpConnection', connectionId);
        return { renewSubscriptionsAt: null, syncIntervalSeconds: null };
      },
      revokeUnkeptTokens: async ({ connectionId }) => started('revokeUnkeptTokens', connectionId),
    };
    worker = await Worker.create({
      connection: temporal.nativeConnection,
      taskQueue,
      workflowsPath: WORKFLOWS_PATH,
      activities,
      maxConcurrentActivityTaskExecutions: 1,
    });
    running = worker.run();
  });

  afterAll(async () => {
    // Whatever failed, nothing is left holding the slot.
    firstRefresh.open();
    userSetUpQueued.open();
    if (worker) {
      worker.shutdown();
      await running;
    }
    await temporal?.teardown();
  });

  async function connect() {
    const connectionId: string = randomUUID();
    const handle = await temporal.client.workflow.signalWithStart<typeof connectionWorkflow, [{ authorizationId: string }]>('connectionWorkflow', {
      workflowId: `connection:airbnb:${connectionId}`,
      taskQueue,
      args: [{ connectionId, provider: 'airbnb', userId: randomUUID(), refreshPolicy: POLICY }],
      signal: authorizeSignal,
      signalArgs: [{ authorizationId: randomUUID() }],
    });
    return { connectionId, handle };
  }

  /** On the task queue or running: scheduled by the workflow and not yet completed. */
  async function pending(handle: WorkflowHandle, name: Start['name']): Promise<boolean> {
    const { raw } = await handle.describe();
    return (raw.pendingActivities ?? []).some((activity) => activity.activityType?.name === name);
  }

  const backlog = () => activityBacklog(temporal, taskQueue);

  it('a user who connects behind a backlog of refreshes has their exchange and setup run before it', { timeout: 120_000 }, async () => {
    const background = await Promise.all(Array.from({ length: BACKGROUND_CONNECTIONS }, () => connect()));
    const ids = background.map(({ connectionId }) => connectionId);
    await eventually(() => startsOf('setUpConnection').length === BACKGROUND_CONNECTIONS && startsOf('revokeUnkeptTokens').length === BACKGROUND_CONNECTIONS);

    const [held, ...queued] = background;
    const refreshNow = (handle: WorkflowHandle) => handle.startUpdate(refreshNowUpdate, { args: [], waitForStage: WorkflowUpdateStage.ACCEPTED });
    const updates = [await refreshNow(held!.handle)];
    await eventually(() => startsOf('refreshConnectionTokens').length === 1, 30_000, 'the first refresh holding the slot');
    updates.push(...(await Promise.all(queued.map(({ handle }) => refreshNow(handle)))));
    await eventually(async () => (await Promise.all(queued.map(({ handle }) => pending(handle, 'refreshConnectionTokens')))).every(Boolean), 30_000, 'the backlog');

    const user = await connect();
    userConnectionId = user.connectionId;
    await eventually(() => pending(user.handle, 'exchangeAuthorizationCode'), 30_000, "the user's exchange scheduled");
    // Scheduled is not yet on the task queue: the server hands it to matching a moment later.
    await eventually(async () => (await backlog()) === queued.length + 1, 30_000, "the user's exchange on the task queue");
    expect(startsOf('refreshConnectionTokens')).toHaveLength(1);

    firstRefresh.open();
    // Either the setup took the slot the exchange freed, or it is on the task queue beside the revocation
    // the exchange asked for, behind the refresh that took the slot.
    const refreshesNotStarted = () => BACKGROUND_CONNECTIONS - startsOf('refreshConnectionTokens').length;
    await eventually(
      async () => startsOf('setUpConnection', user.connectionId).length > 0 || (await backlog()) === refreshesNotStarted() + 2,
      30_000,
      "the user's setup on the task queue",
    );
    userSetUpQueued.open();
    await Promise.all(updates.map((update) => update.result()));
    await eventually(() => startsOf('setUpConnection', user.connectionId).length > 0 && startsOf('revokeUnkeptTokens', user.connectionId).length > 0);

    const order = starts.slice(starts.findIndex((start) => start.name === 'refreshConnectionTokens') + 1);
    const seen = order.map((start) => (start.connectionId === user.connectionId ? `user's ${start.name}` : start.name)).join(', ');
    const position = (name: Start['name']) => order.findIndex((start) => start.name === name && start.connectionId === user.connectionId);
    const refreshesBefore = (index: number) => order.slice(0, index).filter((start) => start.name === 'refreshConnectionTokens').length;
    // The held refresh's slot goes straight to the user's exchange.
    expect(refreshesBefore(position('exchangeAuthorizationCode')), seen).toBe(0);
    // The slot the exchange frees is taken before the user's workflow has scheduled the setup: one
    // refresh, and only one, goes between them.
    expect(refreshesBefore(position('setUpConnection')), seen).toBeLessThanOrEqual(1);
    // Revoking the tokens the user's exchange did not keep can wait behind them all.
    expect(refreshesBefore(position('revokeUnkeptTokens')), seen).toBe(BACKGROUND_CONNECTIONS - 1);

    // Nothing was lost behind the user: every connection refreshed once, and only once.
    expect(startsOf('refreshConnectionTokens').map((start) => start.connectionId).sort()).toEqual([...ids].sort());
    const states = await Promise.all(background.map(({ handle }) => handle.query(statusQuery)));
    expect(states.map(({ status, refreshCount }) => ({ status, refreshCount }))).toEqual(ids.map(() => ({ status: 'active', refreshCount: 1 })));
    expect((await user.handle.query(statusQuery)).status).toBe('active');
  });
});
