import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../../platform/config';
import { createPayloadCodec } from '../../platform/payload-codec';
import { writeWorkflowBundle } from '../../worker/workflow-bundle';
import type { RefreshPolicy } from '../../workflows/connection-messages';
import { describeMachine, type MachineDescription } from '../machine';
import { cpuSecondsByPid, processTreeUsage } from '../processes';
import { writeRawResults, writeResultsSection } from '../results-file';
import type { Teardowns } from '../teardown';
import { connectAll, connectGoogleCalendar, seedUsers, type ConnectAttempt } from './connect-driver';
import {
  activationTimes, connectLatencies, distribution, GoogleCalls, historyCost, lostConnections, meanRefreshIntervalMs, plannedMarginMs, refreshTiming,
  RssSampler, sleep, statusCounts, stragglers, tableRows, waitForRecovery, waitUntilSettled, type Distribution, type HistoryCost, type RefreshTiming,
  type Straggler,
} from './measurements';
import { lifecycleMarkdown } from './report';
import { LifecycleStack } from './stack';

export interface LifecycleSettings {
  sizes: number[];
  observeSeconds: number;
  /** The fake Google's access token lifetime for each size, in the order of `sizes`. */
  accessTokenLifetimeSeconds: number[];
  concurrency: number;
  probeIntervalSeconds: number;
  outageSeconds: number;
  historySample: number;
  settleTimeoutSeconds: number;
  recoveryTimeoutSeconds: number;
  /** What the api-server and the worker get besides the stack's wiring. */
  platformEnvironment: Record<string, string>;
}

export interface LifecycleRun {
  size: number;
  accessTokenLifetimeSeconds: number;
  ramp: { seconds: number; requestsPerSecond: number; failedRequests: string[]; allSettledSeconds: number; statusAfterRamp: Record<string, number>; latencySeconds: Distribution };
  window: {
    seconds: number;
    activeAtStart: number;
    activeAtEnd: number;
    probes: { made: number; failedRequests: string[]; latencySeconds: Distribution };
    refreshes: Omit<RefreshTiming, 'lateValues'>;
    refreshesPerSecond: number;
    refreshesPerLifetime: number;
    /** Percent of one core, per process, over the window. */
    cpuPercent: Record<string, number>;
  };
  history: HistoryCost;
  rows: { perTable: Record<string, number>; total: number; connections: number };
  restart: {
    stopSeconds: number;
    outageSeconds: number;
    startupSeconds: number;
    backlogAtStart: number;
    recoverySeconds: number | null;
    /** Worker up to each overdue connection's first refresh. */
    firstRefreshSeconds: Distribution;
    /** Up to STRAGGLERS_LISTED connections still overdue when recovery timed out. */
    stragglers: Straggler[];
    refreshes: Omit<RefreshTiming, 'lateValues'>;
  };
  workerRssBytes: { peak: number; end: number };
  lost: Array<{ id: string; status: string; lastErrorKind: string | null; lastErrorMessage: string | null }>;
  logDir: string;
  raw: { rampLatencySeconds: number[]; probeLatencySeconds: number[]; windowLateSeconds: number[]; rssSamples: Array<{ at: number; bytes: number }> };
}

const DEFAULT_SIZES = [1000, 5000, 10_000];
const PROBE_SETTLE_TIMEOUT_MS = 120_000;
const STRAGGLERS_LISTED = 10;

/** The suite's settings from the environment (BENCH_LIFECYCLE_*); `sizes` from the command line wins. */
export function lifecycleSettings(environment: NodeJS.ProcessEnv, sizes: number[] | undefined): LifecycleSettings {
  const number = (name: string, fallback: number) => {
    const value = environment[name] ? Number(environment[name]) : fallback;
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
    return value;
  };
  const passedThrough = Object.entries(environment).filter(([name, value]) => /^(WORKER_|TOKEN_REFRESH_)/.test(name) && value);
  const chosenSizes = sizes ?? (environment.BENCH_LIFECYCLE_SIZES ? parseSizes(environment.BENCH_LIFECYCLE_SIZES) : DEFAULT_SIZES);
  return {
    sizes: chosenSizes,
    observeSeconds: number('BENCH_LIFECYCLE_OBSERVE_SECONDS', 300),
    accessTokenLifetimeSeconds: lifetimes(environment.BENCH_LIFECYCLE_TOKEN_LIFETIME_SECONDS ?? '120', chosenSizes),
    concurrency: number('BENCH_LIFECYCLE_CONCURRENCY', 32),
    probeIntervalSeconds: number('BENCH_LIFECYCLE_PROBE_INTERVAL_SECONDS', 2),
    outageSeconds: number('BENCH_LIFECYCLE_OUTAGE_SECONDS', 30),
    historySample: number('BENCH_LIFECYCLE_HISTORY_SAMPLE', 20),
    settleTimeoutSeconds: number('BENCH_LIFECYCLE_SETTLE_TIMEOUT_SECONDS', 900),
    recoveryTimeoutSeconds: number('BENCH_LIFECYCLE_RECOVERY_TIMEOUT_SECONDS', 900),
    platformEnvironment: { TOKEN_REFRESH_MARGIN_SECONDS: '20', TOKEN_REFRESH_JITTER_SECONDS: '10', ...Object.fromEntries(passedThrough) as Record<string, string> },
  };
}

/**
 * One lifetime for every size, or one per size: with lifetimes that grow with N the refreshes asked
 * for per second stay level, so what grows with N is the cost of many live connections, not the load.
 */
function lifetimes(text: string, sizes: number[]): number[] {
  const values = text.split(',').map((value) => Number(value.trim()));
  if (values.some((value) => !Number.isFinite(value) || value <= 0)) throw new Error(`BENCH_LIFECYCLE_TOKEN_LIFETIME_SECONDS must be positive numbers: ${text}`);
  if (values.length === 1) return sizes.map(() => values[0]!);
  if (values.length !== sizes.length) throw new Error(`BENCH_LIFECYCLE_TOKEN_LIFETIME_SECONDS: one lifetime, or one per size (${sizes.length})`);
  return values;
}

export function parseSizes(text: string): number[] {
  const sizes = text.split(',').map((size) => Number(size.trim()));
  if (sizes.some((size) => !Number.isInteger(size) || size <= 0)) throw new Error(`sizes must be positive integers: ${text}`);
  return sizes;
}

/** Each size on a stack of its own, then bench/RESULTS.md's lifecycle section and the raw JSON. */
export async function runLifecycleSuite(settings: LifecycleSettings, teardowns: Teardowns, command: string): Promise<void> {
  // The refresh policy exactly as the platform derives it from the same variables.
  const policy = loadConfig({ APP_ENV: 'test', ...settings.platformEnvironment }, []).tokenRefresh;
  // The worker runs as the image runs it: from a prebuilt workflow bundle, unless the environment names one.
  const bundleFolder = settings.platformEnvironment.WORKER_WORKFLOW_BUNDLE ? undefined : await mkdtemp(path.join(tmpdir(), 'bench-lifecycle-'));
  const stackEnvironment = { ...settings.platformEnvironment };
  if (bundleFolder) {
    stackEnvironment.WORKER_WORKFLOW_BUNDLE = path.join(bundleFolder, 'workflow-bundle.js');
    await writeWorkflowBundle(stackEnvironment.WORKER_WORKFLOW_BUNDLE);
  }
  const runs: LifecycleRun[] = [];
  let machine: MachineDescription | undefined;
  try {
    for (const [index, size] of settings.sizes.entries()) {
      const lifetime = settings.accessTokenLifetimeSeconds[index]!;
      console.log(`lifecycle: N=${size}, tokens of ${lifetime} s`);
      const run = await teardowns.with(
        () => LifecycleStack.create({ label: String(size), accessTokenLifetimeSeconds: lifetime, platformEnvironment: stackEnvironment }),
        async (stack) => {
          await stack.start();
          machine ??= await describeMachine({ temporalCli: stack.temporalCli, databaseUrl: stack.databaseUrl });
          return runOneSize(stack, size, lifetime, settings, policy);
        },
      );
      runs.push(run);
      console.log(`lifecycle: N=${size} done (logs in ${run.logDir})`);
    }
  } finally {
    if (bundleFolder) await rm(bundleFolder, { recursive: true, force: true });
  }
  const rawFile = await writeRawResults('lifecycle', { command, settings, policy, machine, runs });
  await writeResultsSection('lifecycle', lifecycleMarkdown({ machine: machine!, command, settings, policy, runs, rawFile }));
  console.log(`lifecycle: bench/RESULTS.md updated; raw numbers in ${rawFile}`);
}

async function runOneSize(stack: LifecycleStack, size: number, lifetime: number, settings: LifecycleSettings, policy: RefreshPolicy): Promise<LifecycleRun> {
  const log = (line: string) => console.log(`  [N=${size}] ${line}`);
  const rss = new RssSampler(() => stack.worker?.pid);
  rss.start();
  const google = new GoogleCalls(stack.google.statsUrl);

  // The ramp: N users connect through the real endpoints.
  const users = await seedUsers(stack.db, 'ramp', size);
  const rampStart = Date.now();
  const attempts = await connectAll(stack.apiUrl, users, settings.concurrency);
  const rampSeconds = (Date.now() - rampStart) / 1000;
  log(`${attempts.length} callbacks in ${rampSeconds.toFixed(1)} s; waiting for the connections to settle`);
  const statusAfterRamp = await waitUntilSettled(stack.db, size, settings.settleTimeoutSeconds * 1000);
  const allSettledSeconds = (Date.now() - rampStart) / 1000;
  log(`settled after ${allSettledSeconds.toFixed(1)} s: ${JSON.stringify(statusAfterRamp)}`);

  // The window: refreshes run, and a trickle of new users connects meanwhile. It opens a token lifetime
  // after the first connect and a mean refresh interval after the last activation at the earliest,
  // when every connection is in its refresh cycle.
  const refreshIntervalMs = meanRefreshIntervalMs(lifetime, policy);
  const lastActivation = [...(await activationTimes(stack.db)).values()].reduce((latest, at) => Math.max(latest, at), rampStart);
  await sleep(Math.max(rampStart + lifetime * 1000, lastActivation + refreshIntervalMs) - Date.now());
  const probeUsers = await seedUsers(stack.db, 'probe', Math.ceil(settings.observeSeconds / settings.probeIntervalSeconds));
  const activeAtStart = (await statusCounts(stack.db)).active ?? 0;
  const cpuAtStart = await cpuSnapshot(stack);
  const windowStart = Date.now();
  const probes: Array<Promise<ConnectAttempt>> = [];
  const prober = setInterval(() => {
    const user = probeUsers[probes.length];
    if (user) probes.push(connectGoogleCalendar(stack.apiUrl, user));
  }, settings.probeIntervalSeconds * 1000);
  await sleep(settings.observeSeconds * 1000);
  clearInterval(prober);
  const windowEnd = Date.now();
  const cpuAtEnd = await cpuSnapshot(stack);
  const activeAtEnd = (await statusCounts(stack.db)).active ?? 0;
  const probeAttempts = await Promise.all(probes);
  await waitUntilSettled(stack.db, size + probeAttempts.length, PROBE_SETTLE_TIMEOUT_MS);
  const activated = await activationTimes(stack.db);
  await google.update();
  const windowTiming = refreshTiming(google.between(windowStart, windowEnd), policy);
  const windowSeconds = (windowEnd - windowStart) / 1000;
  // Connection-seconds within the window: probes count from their activation on.
  const exposureSeconds = [...activated.values()].reduce((sum, at) => sum + Math.max(0, windowEnd - Math.max(windowStart, at)) / 1000, 0);
  log(`window: ${windowTiming.refreshes} refreshes, ${windowTiming.afterExpiry} after expiry`);

  const history = await sampleHistories(stack, settings, lifetime, { from: windowStart, to: windowEnd });
  const perTable = await tableRows(stack.db);
  const connections = Object.values(await statusCounts(stack.db)).reduce((sum, count) => sum + count, 0);

  // A worker restart with N live runs.
  const stoppedAt = Date.now();
  const stopMs = await stack.stopWorker();
  await sleep(settings.outageSeconds * 1000);
  const outageSeconds = (Date.now() - stoppedAt) / 1000;
  const startupMs = await stack.startWorker();
  const workerUpAt = Date.now();
  const marginMs = plannedMarginMs(lifetime, policy);
  const recovery = await waitForRecovery(stack.db, workerUpAt, marginMs, settings.recoveryTimeoutSeconds * 1000);
  const stillOverdue = recovery.recoveredAt === null
    ? await withTemporalClient(stack, (client) => stragglers(stack.db, client, workerUpAt, marginMs, STRAGGLERS_LISTED))
    : [];
  await google.update();
  const restartTiming = refreshTiming(google.between(stoppedAt, recovery.recoveredAt ?? Date.now()), policy);
  log(`restart: up in ${(startupMs / 1000).toFixed(1)} s, backlog ${recovery.backlog}, recovered ${recovery.recoveredAt ? `after ${((recovery.recoveredAt - workerUpAt) / 1000).toFixed(1)} s` : 'never'}`);
  await rss.sample();
  rss.stop();

  const rampLatency = connectLatencies(attempts, activated);
  const probeLatency = connectLatencies(probeAttempts, activated);
  const { lateValues, ...windowRefreshes } = windowTiming;
  const { lateValues: _restartLate, ...restartRefreshes } = restartTiming;
  return {
    size,
    accessTokenLifetimeSeconds: lifetime,
    ramp: {
      seconds: rampSeconds,
      requestsPerSecond: attempts.length / rampSeconds,
      failedRequests: attempts.filter((attempt) => attempt.status !== 202).map((attempt) => attempt.error ?? String(attempt.status)),
      allSettledSeconds,
      statusAfterRamp,
      latencySeconds: distribution(rampLatency),
    },
    window: {
      seconds: windowSeconds,
      activeAtStart,
      activeAtEnd,
      probes: {
        made: probeAttempts.length,
        failedRequests: probeAttempts.filter((attempt) => attempt.status !== 202).map((attempt) => attempt.error ?? String(attempt.status)),
        latencySeconds: distribution(probeLatency),
      },
      refreshes: windowRefreshes,
      refreshesPerSecond: windowTiming.refreshes / windowSeconds,
      // One refresh is due per token, when its margin begins: 1.0 is one refresh per token lifetime.
      refreshesPerLifetime: windowTiming.refreshes / ((exposureSeconds * 1000) / refreshIntervalMs),
      cpuPercent: cpuPercent(cpuAtStart, cpuAtEnd, windowSeconds),
    },
    history,
    rows: { perTable, total: Object.values(perTable).reduce((sum, count) => sum + count, 0), connections },
    restart: {
      stopSeconds: stopMs / 1000,
      outageSeconds,
      startupSeconds: startupMs / 1000,
      backlogAtStart: recovery.backlog,
      recoverySeconds: recovery.recoveredAt === null ? null : (recovery.recoveredAt - workerUpAt) / 1000,
      firstRefreshSeconds: distribution(recovery.firstRefreshMs.map((ms) => ms / 1000)),
      stragglers: stillOverdue,
      refreshes: restartRefreshes,
    },
    workerRssBytes: { peak: rss.peakBytes, end: rss.lastBytes },
    lost: await lostConnections(stack.db),
    logDir: stack.logDir,
    raw: { rampLatencySeconds: rampLatency, probeLatencySeconds: probeLatency, windowLateSeconds: lateValues, rssSamples: rss.samples },
  };
}

async function sampleHistories(stack: LifecycleStack, settings: LifecycleSettings, lifetime: number, window: { from: number; to: number }): Promise<HistoryCost> {
  // Connections active before the window opened: a probe's connect would count as refresh cost.
  const { rows } = await stack.db.query<{ workflow_id: string }>(
    `SELECT workflow_id FROM integration_connections WHERE status = 'active' AND id IN (
       SELECT connection_id FROM audit_log WHERE action = 'IntegrationConnect' AND outcome = 'success' AND occurred_at < $2
     ) ORDER BY random() LIMIT $1`,
    [settings.historySample, new Date(window.from)],
  );
  return withTemporalClient(stack, (client) => historyCost(client, rows.map((row) => row.workflow_id), lifetime, window));
}

/** A client of the stack's Temporal server that decodes the platform's payloads, for the length of `use`. */
async function withTemporalClient<R>(stack: LifecycleStack, use: (client: Client) => Promise<R>): Promise<R> {
  const connection = await Connection.connect({ address: stack.temporalAddress });
  try {
    const codec = createPayloadCodec({ activeKey: stack.platformEnvironment.TEMPORAL_PAYLOAD_KEY, previousKeys: [] });
    return await use(new Client({ connection, dataConverter: { payloadCodecs: [codec] } }));
  } finally {
    await connection.close();
  }
}

interface CpuSnapshot {
  byProcess: Record<string, number>;
  postgresByPid: Map<number, number>;
  bench: number;
}

async function cpuSnapshot(stack: LifecycleStack): Promise<CpuSnapshot> {
  const byProcess: Record<string, number> = {};
  for (const service of stack.processes) byProcess[service.name] = (await processTreeUsage(service.pid)).cpuSeconds;
  const { rows } = await stack.db.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database()');
  const usage = process.cpuUsage();
  return { byProcess, postgresByPid: await cpuSecondsByPid(rows.map((row) => row.pid)), bench: (usage.user + usage.system) / 1e6 };
}

/** PostgreSQL counts the backends of the bench's database alive at the window's end (one that ended during it is missed). */
function cpuPercent(start: CpuSnapshot, end: CpuSnapshot, seconds: number): Record<string, number> {
  const percent = (cpuSeconds: number) => Math.round((cpuSeconds / seconds) * 1000) / 10;
  const result: Record<string, number> = {};
  for (const [name, cpu] of Object.entries(end.byProcess)) if (name in start.byProcess) result[name] = percent(cpu - start.byProcess[name]!);
  let postgres = 0;
  for (const [pid, cpu] of end.postgresByPid) postgres += cpu - (start.postgresByPid.get(pid) ?? 0);
  result.postgres = percent(postgres);
  result.bench = percent(end.bench - start.bench);
  return result;
}
