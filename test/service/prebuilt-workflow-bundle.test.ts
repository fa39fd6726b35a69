import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { connectGoogleCalendar, GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { startTemporalDevServer } from '../helpers/temporal';
import { startWorkerProcess, WORKER_READY_TIMEOUT_MS, type WorkerProcess } from './worker-process';

/**
 * Issue 12: a production worker loads the workflow bundle `npm run bundle-workflows` built
 * (WORKER_WORKFLOW_BUNDLE) instead of bundling as it starts, and runs connections from it.
 */
describe('worker with a prebuilt workflow bundle', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  let worker: WorkerProcess | undefined;
  let folder: string;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, google, worker: false });
    folder = await mkdtemp(path.join(tmpdir(), 'workflow-bundle-'));
  });

  afterAll(async () => {
    if (worker?.child.exitCode === null) worker.child.kill('SIGKILL');
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  it('npm run bundle-workflows writes the bundle; a worker started with it connects a user without bundling', { timeout: WORKER_READY_TIMEOUT_MS + 90_000 }, async () => {
    const bundlePath = path.join(folder, 'workflow-bundle.js');
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/bundle-workflows.ts', bundlePath], { cwd: path.resolve(import.meta.dirname, '..', '..') });
    expect(stdout).toContain(`workflow bundle written to ${bundlePath}`);

    worker = await startWorkerProcess(platform, temporal, google, { WORKER_WORKFLOW_BUNDLE: bundlePath });
    expect(await worker.ready()).toEqual({ status: 'ready', checks: { database: 'ok', temporal: 'ok', worker: 'ok' } });
    const { sessionToken } = await platform.signUp('bundle@example.com');
    const connected = await connectGoogleCalendar(platform, sessionToken);
    expect(connected.status).toBe(202);
    const { workflowId } = connected.body as { workflowId: string };
    await waitForConnectionState(platform, workflowId, (state) => state.status === 'active' && state.providerSetUpDone === true);
    expect(worker.output()).not.toContain('Workflow bundle created');
  });

  it('a worker whose WORKER_WORKFLOW_BUNDLE names no file stops at once, naming the variable', { timeout: WORKER_READY_TIMEOUT_MS }, async () => {
    const missing = path.join(folder, 'missing.js');
    const stopped = await startWorkerProcess(platform, temporal, google, { WORKER_WORKFLOW_BUNDLE: missing });
    expect(await stopped.exited).toBe(2);
    expect(stopped.output()).toContain(`WORKER_WORKFLOW_BUNDLE: no file at ${missing} (build it with npm run bundle-workflows)`);
  });
});
