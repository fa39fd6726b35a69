import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../db/embedded';
import { migrate } from '../../db/migrate';
import { generateEncryptionKey } from '../../platform/integration-crypto';
import { ensureTemporalCli } from '../../scripts/temporal-binaries';
import { PRIORITY_DISPATCH_ARGS } from '../../scripts/temporal-dynamic-config';
import { freePort } from '../../test/helpers/ports';
import { registerSearchAttributes } from '../../worker/search-attributes';
import { ServiceProcess } from '../processes';

export interface StackSettings {
  /** Used in the database's name. */
  label: string;
  accessTokenLifetimeSeconds: number;
  /** The platform's environment besides what the stack wires (refresh margin, jitter, WORKER_* tuning). */
  platformEnvironment: Record<string, string>;
}

export interface FakeGoogleUrls {
  authorizeUrl: string;
  tokenUrl: string;
  revokeUrl: string;
  calendarApiUrl: string;
  riscJwksUrl: string;
  statsUrl: string;
}

const GOOGLE_CLIENT = { clientId: 'bench-client.apps.googleusercontent.com', clientSecret: 'GOCSPX-bench-client-secret' };
const NAMESPACE = 'default';
const START_TIMEOUT_MS = 120_000;

/**
 * One clean stack on loopback, each part in its own process: a fresh database, a Temporal dev server
 * (SQLite), the fake Google, the api-server and the worker as production runs them. `close()` takes
 * all of it down; `killNow()` is for an exiting bench that cannot wait.
 */
export class LifecycleStack {
  readonly processes: ServiceProcess[] = [];
  private readonly cleanups: Array<() => Promise<void>> = [];
  databaseUrl = '';
  /** The bench's own connections, for seeding and reading results. */
  db!: pg.Pool;
  apiUrl = '';
  temporalAddress = '';
  temporalCli = '';
  google!: FakeGoogleUrls;
  platformEnvironment: Record<string, string> = {};
  worker: ServiceProcess | undefined;

  private constructor(
    readonly settings: StackSettings,
    /** The Temporal and embedded PostgreSQL data, removed at close. */
    readonly workDir: string,
    /** Each process's output, kept after the run. */
    readonly logDir: string,
  ) {}

  /** Nothing runs yet: the caller can register the stack for teardown before `start()`. */
  static async create(settings: StackSettings): Promise<LifecycleStack> {
    const workDir = await mkdtemp(path.join(tmpdir(), 'bench-lifecycle-data-'));
    const logDir = await mkdtemp(path.join(tmpdir(), `bench-lifecycle-logs-${settings.label}-`));
    return new LifecycleStack(settings, workDir, logDir);
  }

  async start(): Promise<void> {
    await this.startDatabase();
    await this.startTemporal();
    await this.startFakeGoogle();
    await this.startApiServer();
    await this.startWorker();
  }

  /** Spawn to the worker's "worker started" line, in ms. */
  async startWorker(): Promise<number> {
    const startedAt = performance.now();
    const worker = this.spawnTsx('worker', 'worker/main.ts', { ...this.platformEnvironment, WORKER_HEALTH_PORT: '0' });
    this.worker = worker;
    await worker.waitForLine(/worker started/, START_TIMEOUT_MS);
    return performance.now() - startedAt;
  }

  /** SIGTERM, and waits until the worker (and its children) exited; answers how long that took, in ms. */
  async stopWorker(): Promise<number> {
    const startedAt = performance.now();
    await this.worker?.stop();
    this.worker = undefined;
    return performance.now() - startedAt;
  }

  async close(): Promise<void> {
    for (const service of [...this.processes].reverse()) await service.stop().catch(() => undefined);
    for (const cleanup of this.cleanups.reverse()) await cleanup().catch((error: unknown) => console.error('bench teardown:', error));
    this.cleanups.length = 0;
    await rm(this.workDir, { recursive: true, force: true });
  }

  killNow(): void {
    for (const service of this.processes) service.killNow();
  }

  private async startDatabase(): Promise<void> {
    let serverUrl = process.env.DATABASE_URL;
    if (!serverUrl) {
      const embedded: EmbeddedPostgresHandle = await startEmbeddedPostgres({ dataDir: path.join(this.workDir, 'postgres'), port: await freePort(), persistent: false });
      this.cleanups.push(() => embedded.stop());
      serverUrl = embedded.url;
    }
    const name = `bench_lifecycle_${this.settings.label}_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    this.cleanups.push(async () => {
      const dropper = new pg.Client({ connectionString: serverUrl });
      await dropper.connect();
      await dropper.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await dropper.end();
    });
    const url = new URL(serverUrl);
    url.pathname = `/${name}`;
    this.databaseUrl = url.toString();
    await migrate(this.databaseUrl);
    this.db = new pg.Pool({ connectionString: this.databaseUrl, max: 4 });
    this.cleanups.push(() => this.db.end());
  }

  private async startTemporal(): Promise<void> {
    const cli = await ensureTemporalCli();
    if (!cli) throw new Error('no Temporal CLI found (see scripts/temporal-binaries.ts)');
    this.temporalCli = cli;
    const [port, httpPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    this.temporalAddress = `127.0.0.1:${port}`;
    this.processes.push(ServiceProcess.start('temporal', cli, [
      'server', 'start-dev', '--headless', '--ip', '127.0.0.1', '--port', String(port), '--http-port', String(httpPort),
      '--metrics-port', String(metricsPort), '--db-filename', path.join(this.workDir, 'temporal.sqlite'), '--namespace', NAMESPACE,
      ...PRIORITY_DISPATCH_ARGS,
    ], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, logDir: this.logDir }));
    // Before the worker: a workflow that upserts an unregistered search attribute fails its task.
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      try {
        const connection = await Connection.connect({ address: this.temporalAddress });
        try {
          await registerSearchAttributes(connection, NAMESPACE);
        } finally {
          await connection.close();
        }
        return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }

  private async startFakeGoogle(): Promise<void> {
    const google = this.spawnTsx('fake-google', 'bench/lifecycle/fake-google-process.ts', {
      BENCH_GOOGLE_CLIENT_ID: GOOGLE_CLIENT.clientId,
      BENCH_GOOGLE_CLIENT_SECRET: GOOGLE_CLIENT.clientSecret,
      BENCH_ACCESS_TOKEN_LIFETIME_SECONDS: String(this.settings.accessTokenLifetimeSeconds),
    });
    this.google = JSON.parse(await google.waitForLine(/^\{"url"/, START_TIMEOUT_MS)) as FakeGoogleUrls;
  }

  private async startApiServer(): Promise<void> {
    const [apiPort, realityPort] = [await freePort(), await freePort()];
    this.apiUrl = `http://127.0.0.1:${apiPort}`;
    this.platformEnvironment = {
      // Production accepts a loopback http PUBLIC_BASE_URL; the bench sends bearer sessions, so no cookie is needed.
      APP_ENV: 'production',
      DATABASE_URL: this.databaseUrl,
      TEMPORAL_ADDRESS: this.temporalAddress,
      TEMPORAL_NAMESPACE: NAMESPACE,
      INTEGRATION_ENCRYPTION_KEY: generateEncryptionKey(),
      TEMPORAL_PAYLOAD_KEY: generateEncryptionKey(),
      API_HOST: '127.0.0.1',
      API_PORT: String(apiPort),
      PUBLIC_BASE_URL: this.apiUrl,
      // No reality-server runs; the worker only needs the address for SSO logouts, which never happen here.
      REALITY_PUBLIC_URL: `http://127.0.0.1:${realityPort}`,
      GOOGLE_CLIENT_ID: GOOGLE_CLIENT.clientId,
      GOOGLE_CLIENT_SECRET: GOOGLE_CLIENT.clientSecret,
      GOOGLE_AUTHORIZE_URL: this.google.authorizeUrl,
      GOOGLE_TOKEN_URL: this.google.tokenUrl,
      GOOGLE_REVOKE_URL: this.google.revokeUrl,
      GOOGLE_CALENDAR_API_URL: this.google.calendarApiUrl,
      GOOGLE_RISC_JWKS_URL: this.google.riscJwksUrl,
      ...this.settings.platformEnvironment,
    };
    this.spawnTsx('api-server', 'api/main.ts', this.platformEnvironment);
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await fetch(`${this.apiUrl}/healthz`).then((response) => response.ok, () => false))) {
      if (Date.now() > deadline) throw new Error(`api-server did not answer /healthz (log: ${this.logDir}/api-server.log)`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  private spawnTsx(name: string, script: string, environment: Record<string, string>): ServiceProcess {
    const service = ServiceProcess.tsx(name, script, { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...environment }, logDir: this.logDir });
    this.processes.push(service);
    void service.exited.then(() => {
      const index = this.processes.indexOf(service);
      if (index >= 0) this.processes.splice(index, 1);
    });
    return service;
  }
}
