import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { WorkflowUpdateStage } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { refreshNowUpdate, statusQuery } from '../../workflows/connection-messages';
import { connectGoogleCalendar, GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { startTemporalDevServer } from '../helpers/temporal';
import { startWorkerProcess, WORKER_READY_TIMEOUT_MS, type WorkerProcess } from './worker-process';

/**
 * Issue 5, test 5: the production worker process (`npm run worker`) gets SIGTERM while a token
 * refresh is waiting for Google's answer. The refresh must finish on that worker (tokens stored,
 * completion recorded in Temporal) before the process exits, and the next worker carries on.
 */
describe('worker graceful shutdown', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  const workers: WorkerProcess[] = [];
  const heldAnswers: Array<() => void> = [];

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, google, worker: false });
  });

  afterAll(async () => {
    heldAnswers.splice(0).forEach((release) => release());
    for (const worker of workers) if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  async function worker(): Promise<WorkerProcess> {
    const started = await startWorkerProcess(platform, temporal, google);
    workers.push(started);
    expect(await started.ready()).toEqual({ status: 'ready', checks: { database: 'ok', temporal: 'ok', worker: 'ok' } });
    return started;
  }

  const storedTokenVersion = (connectionId: string) =>
    platform.db.oneFirst(sql.type(z.object({ tokenVersion: z.number() }))`SELECT token_version AS "tokenVersion" FROM integration_connections WHERE id = ${connectionId}`);
  const refreshAnswers = () => google.calls.filter((call) => call.endpoint === 'token' && call.grantType === 'refresh_token').map((call) => call.status);

  async function refreshActivityOutcomes(workflowId: string): Promise<string[]> {
    const outcomes: string[] = [];
    const refreshes = new Set<string>();
    for (const event of (await platform.client.workflow.getHandle(workflowId).fetchHistory()).events ?? []) {
      if (event.activityTaskScheduledEventAttributes?.activityType?.name === 'refreshConnectionTokens') refreshes.add(String(event.eventId));
      const closed =
        (event.activityTaskCompletedEventAttributes && ['completed', event.activityTaskCompletedEventAttributes]) ||
        (event.activityTaskFailedEventAttributes && ['failed', event.activityTaskFailedEventAttributes]) ||
        (event.activityTaskTimedOutEventAttributes && ['timed out', event.activityTaskTimedOutEventAttributes]);
      if (closed && refreshes.has(String((closed[1] as { scheduledEventId?: unknown }).scheduledEventId))) outcomes.push(closed[0] as string);
    }
    return outcomes;
  }

  async function until(condition: () => boolean, what: string, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  // Two worker processes start in turn, each bundling the workflows first.
  it('lets the refresh in flight finish on SIGTERM, loses nothing, and the next worker carries on', { timeout: 2 * WORKER_READY_TIMEOUT_MS + 60_000 }, async () => {
    const first = await worker();
    const { sessionToken } = await platform.signUp('ann@example.com');
    const connected = await connectGoogleCalendar(platform, sessionToken);
    expect(connected.status).toBe(202);
    const { connectionId, workflowId } = connected.body as { connectionId: string; workflowId: string };
    const before = await waitForConnectionState(platform, workflowId, (state) => state.status === 'active');
    expect(refreshAnswers()).toEqual([]);

    // Google rotates refresh tokens, so a refresh whose answer were lost would cost the grant.
    google.switches.rotateRefreshTokens = true;
    // Only the refresh calls the token endpoint from here on, so a held answer is its. (A count of issued
    // secrets is no sign of it: the calendar watch the new connection may set up only now adds a channel token.)
    google.switches.holdAnswer = () => new Promise<void>((release) => heldAnswers.push(release));
    const handle = platform.client.workflow.getHandle(workflowId);
    const update = await handle.startUpdate(refreshNowUpdate, { args: [], waitForStage: WorkflowUpdateStage.ACCEPTED });
    // Google has issued the new tokens and is holding its answer: the activity is mid-request.
    await until(() => heldAnswers.length > 0, "the refresh to reach Google's token endpoint");
    expect(await refreshActivityOutcomes(workflowId)).toEqual([]);

    first.child.kill('SIGTERM');
    // Google answers only once the worker is stopping, so the attempt ends on a worker that takes no new tasks.
    await until(() => first.logLines.some((line) => line.msg === 'worker stopping: no new tasks, running activities may finish'), 'the worker to log that it is stopping');
    google.switches.holdAnswer = undefined;
    heldAnswers.splice(0).forEach((release) => release());
    expect(await first.exited).toBe(0);
    // Temporal's activity log lines come through pino with the workflow id, and without the task token.
    const refreshLogLines = first.logLines.filter((line) => line.activityType === 'refreshConnectionTokens');
    expect(refreshLogLines.length).toBeGreaterThan(0);
    for (const line of refreshLogLines) expect(line).toMatchObject({ workflowId, taskToken: '[redacted]' });

    // The attempt ended on the stopping worker: tokens stored, completion recorded, no second attempt.
    expect(await storedTokenVersion(connectionId)).toBe(before.tokenVersion + 1);
    expect(await refreshActivityOutcomes(workflowId)).toEqual(['completed']);
    expect(refreshAnswers()).toEqual([200]);

    const second = await worker();
    expect(await update.result()).toMatchObject({ tokenVersion: before.tokenVersion + 1 });
    // Only the rotated refresh token works now, so this refresh proves the stored one is it.
    const again = await handle.executeUpdate(refreshNowUpdate, { args: [] });
    expect(again.tokenVersion).toBe(before.tokenVersion + 2);
    expect(refreshAnswers()).toEqual([200, 200]);
    expect(await handle.query(statusQuery)).toMatchObject({ status: 'active', tokenVersion: before.tokenVersion + 2, refreshCount: before.refreshCount + 2 });
    expect(await refreshActivityOutcomes(workflowId)).toEqual(['completed', 'completed']);

    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });
});
