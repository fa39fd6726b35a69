import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { FakeGoogle } from '../../fakes/google';
import { fakeGoogleEnvironment, type TestPlatform } from '../helpers/platform';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** `npm run worker` as production runs it: its own process, configured by environment variables only. */
export interface WorkerProcess {
  child: ChildProcess;
  /** Every JSON line the worker logged so far. */
  logLines: Array<Record<string, unknown>>;
  /** Everything the process wrote so far, stdout and stderr, as written. */
  output(): string;
  /** Resolves with the exit code once the process has ended and its output is read to the end. */
  exited: Promise<number | null>;
  /** Resolves with the /readyz answer once it is 200; rejects when the process ends first. */
  ready(timeoutMs?: number): Promise<Record<string, unknown>>;
}

/**
 * How long a worker process may take to become ready: it bundles the workflows as it starts, which
 * takes a loaded 2-core machine a good 20 s.
 */
export const WORKER_READY_TIMEOUT_MS = 90_000;

export async function startWorkerProcess(platform: TestPlatform, temporal: TestWorkflowEnvironment, google: FakeGoogle, environment: Record<string, string> = {}): Promise<WorkerProcess> {
  const { config } = platform;
  const child = spawn(process.execPath, ['--import', 'tsx', 'worker/main.ts'], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      APP_ENV: 'test',
      // Debug: the SDK logs each activity's start and end there.
      LOG_LEVEL: 'debug',
      API_HOST: '127.0.0.1',
      // Any free port, which the worker names in its start line: a port picked here could be taken by
      // another test's server before the worker, still bundling its workflows, gets to listen on it.
      WORKER_HEALTH_PORT: '0',
      DATABASE_URL: config.databaseUrl,
      PUBLIC_BASE_URL: config.http.publicBaseUrl,
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: config.temporal.namespace,
      TEMPORAL_TASK_QUEUE: config.temporal.taskQueue,
      INTEGRATION_ENCRYPTION_KEY: config.encryption.activeKey,
      TEMPORAL_PAYLOAD_KEY: config.payloadEncryption.activeKey,
      ...fakeGoogleEnvironment(google),
      ...environment,
    },
  });
  const logLines: Array<Record<string, unknown>> = [];
  let pending = '';
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
    const lines = (pending + chunk).split('\n');
    pending = lines.pop()!;
    for (const line of lines) if (line.startsWith('{')) logLines.push(JSON.parse(line) as Record<string, unknown>);
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    output += chunk;
  });
  // 'close', not 'exit': the pipes may still hold the last lines when the process has exited.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const healthPort = () => logLines.find((line) => line.msg === 'worker started')?.healthPort as number | undefined;

  return {
    child,
    logLines,
    output: () => output,
    exited,
    async ready(timeoutMs = WORKER_READY_TIMEOUT_MS) {
      const deadline = Date.now() + timeoutMs;
      let ended = false;
      void exited.then(() => (ended = true));
      for (;;) {
        if (ended) throw new Error(`worker process ended before it was ready:\n${stderr}`);
        const port = healthPort();
        const answer = port === undefined ? undefined : await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        if (answer?.status === 200) return (await answer.json()) as Record<string, unknown>;
        if (Date.now() > deadline) throw new Error(`worker process not ready after ${timeoutMs} ms:\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    },
  };
}
