import path from 'node:path';
import type { RefreshPolicy } from '../../workflows/connection-messages';
import { machineMarkdown, type MachineDescription } from '../machine';
import type { LifecycleRun, LifecycleSettings } from './main';
import { loadConfig } from '../../platform/config';
import { meanRefreshIntervalMs, plannedMarginMs } from './measurements';

type Cell = number | null | undefined;

interface Report {
  machine: MachineDescription;
  command: string;
  settings: LifecycleSettings;
  policy: RefreshPolicy;
  runs: LifecycleRun[];
  rawFile: string;
}

const MB = 2 ** 20;
const GB = 2 ** 30;

const HOUR_SECONDS = 3600;

const sizeLabel = (size: number) => (size >= 1000 && size % 1000 === 0 ? `${size / 1000}k` : String(size));

function format(value: Cell, digits = 2): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

/** A figure's table: a row per measure, a column per N, and how the measure grew from the first N to the last. */
function table(title: string, runs: LifecycleRun[], rows: Array<[string, (run: LifecycleRun) => Cell]>): string {
  const first = runs[0]!.size;
  const last = runs.at(-1)!.size;
  const header = `| | ${runs.map((run) => `N=${run.size}`).join(' | ')} | growth ${sizeLabel(first)}→${sizeLabel(last)} |`;
  const lines = rows.map(([label, value]) => {
    const cells = runs.map(value);
    const [from, to] = [cells[0], cells.at(-1)];
    const growth = runs.length > 1 && typeof from === 'number' && typeof to === 'number' && from !== 0 ? `×${(to / from).toFixed(2)}` : '—';
    return `| ${label} | ${cells.map((cell) => format(cell)).join(' | ')} | ${growth} |`;
  });
  return [`### ${title}`, '', header, `|---|${runs.map(() => '---:').join('|')}|---:|`, ...lines].join('\n');
}

const verdict = (met: boolean | undefined) => (met === undefined ? 'not measured' : met ? 'met' : '**not met**');

function targets(report: Report): string {
  const { runs } = report;
  const at = (size: number) => runs.find((run) => run.size === size);
  const every = (test: (run: LifecycleRun) => boolean | undefined) => runs.map((run) => `N=${run.size}: ${verdict(test(run))}`).join(', ');
  // A window with no refresh at all kept up with nothing: every connection was stuck.
  const keptUp = (run: LifecycleRun) => (run.window.refreshes.refreshes === 0 ? false : run.window.refreshes.afterExpiry === 0 && run.window.refreshes.expiredTokenCalls === 0);
  const sustained = runs.filter(keptUp);
  const largestRun = sustained.reduce<LifecycleRun | undefined>((largest, run) => (largest && largest.size > run.size ? largest : run), undefined);
  const defaultPolicy = loadConfig({ APP_ENV: 'development' }, []).tokenRefresh;
  const hourIntervalSeconds = meanRefreshIntervalMs(HOUR_SECONDS, defaultPolicy) / 1000;
  const perCore = largestRun === undefined ? undefined : (largestRun.window.refreshesPerSecond * hourIntervalSeconds) / report.machine.cores;
  const cpuPerRefresh = (run: LifecycleRun, process: string) =>
    run.window.refreshes.refreshes === 0 ? null : ((run.window.cpuPercent[process] ?? 0) / 100) * run.window.seconds / run.window.refreshes.refreshes;
  // The window's CPU, every process's, spread over its refreshes (probes' connects included): the rate all cores could carry.
  const cpuBoundRate = (run: LifecycleRun) => {
    const total = Object.values(run.window.cpuPercent).reduce((sum, percent) => sum + percent, 0);
    return total === 0 || run.window.refreshes.refreshes === 0 ? null : (report.machine.cores * 100 * run.window.refreshesPerSecond) / total;
  };
  const largest = runs.reduce((last, run) => (run.size > last.size ? run : last));
  const cpuBoundPerCore = (rate: number | null) => (rate === null ? null : (rate * hourIntervalSeconds) / report.machine.cores);
  const at5k = at(5000);
  /** Fewer whole cycles than this (a run that fell behind, or a short window) are no ground for a verdict. */
  const MIN_CYCLES_FOR_VERDICT = 10;
  const at10k = at(10_000);
  return [
    '### Issue 12 targets',
    '',
    '| target | verdict |',
    '|---|---|',
    `| 0 connections lost to load at every N | ${every((run) => run.lost.length === 0)} |`,
    `| connect p99 under 5 s at 5,000 while refreshes run | ${at5k ? `${verdict((at5k.window.probes.latencySeconds.p99 ?? Infinity) < 5)} (${format(at5k.window.probes.latencySeconds.p99)} s)` : 'not measured (N=5000 not run)'} |`,
    // A run that fell behind makes fewer refreshes than are due: its ratio says nothing about refreshing twice.
    `| at most 1.1 refreshes per token lifetime | ${runs.map((run) => `N=${run.size}: ${run.window.refreshes.afterExpiry > 0 ? '**not met** (fell behind)' : verdict(run.window.refreshes.refreshes === 0 ? undefined : run.window.refreshesPerLifetime <= 1.1)} (${format(run.window.refreshesPerLifetime)})`).join(', ')} |`,
    `| at most 10 history events per refresh cycle (within a run, max) | ${runs.map((run) => `N=${run.size}: ${run.history.cycles < MIN_CYCLES_FOR_VERDICT ? `too few whole cycles seen (${run.history.cycles})` : verdict((run.history.eventsPerCycle.max ?? Infinity) <= 10)} (${format(run.history.eventsPerCycle.max, 0)})`).join(', ')} |`,
    `| 0 refreshes after expiry and 0 expired-token calls | ${every(keptUp)}${runs.some((run) => run.window.refreshes.refreshes === 0) ? ' (a window without a single refresh is not met)' : ''} |`,
    `| worker RSS under 1 GB at 10,000 | ${at10k ? `${verdict(at10k.workerRssBytes.peak < GB)} (peak ${format(at10k.workerRssBytes.peak / MB, 0)} MB)` : 'not measured (N=10000 not run)'} |`,
    `| connections per core at 1-hour tokens (extrapolated) | ${largestRun === undefined ? 'not measured (no N without a refresh after expiry)' : `at least **${format(perCore, 0)}** (from N=${largestRun.size}, whose refresh rate is what that N asks for, not the machine's limit)`} |`,
    `| CPU seconds per refresh: worker / Temporal server | ${runs.map((run) => `N=${run.size}: ${format(cpuPerRefresh(run, 'worker'), 4)} / ${format(cpuPerRefresh(run, 'temporal'), 4)}`).join(', ')} |`,
    `| refreshes per second the cores could carry (CPU-bound estimate) | ${runs.map((run) => `N=${run.size}: ${format(cpuBoundRate(run), 1)}`).join(', ')}; at 1-hour tokens about **${format(cpuBoundPerCore(cpuBoundRate(largest)), 0)}** connections per core (from N=${largest.size}) |`,
    '',
    largestRun === undefined
      ? 'No N run here was sustained without a refresh after expiry.'
      : `*Connections per core at 1-hour tokens* is an extrapolation from the refresh throughput measured with ${largestRun.accessTokenLifetimeSeconds} s tokens: ` +
        `the sustained refreshes per second at the largest N run here with 0 refreshes after expiry and 0 expired-token calls ` +
        `(N=${largestRun.size}: ${format(largestRun.window.refreshesPerSecond)}/s) × the mean time a 1-hour token is kept under the default policy ` +
        `(${JSON.stringify(defaultPolicy)}: ${format(hourIntervalSeconds, 0)} s) / ${report.machine.cores} cores. Memory, timers and history at that N were not measured` +
        (largestRun.size === Math.max(...runs.map((run) => run.size)) ? '; it is the largest N run, so the machine may sustain more.' : '.') +
        ' *CPU seconds per refresh* = the process tree\'s CPU % over the window × the window / refreshes in it: the larger one is the bottleneck. ' +
        '*Refreshes per second the cores could carry* = the cores × the window\'s refreshes per second / the CPU all processes used in it, in cores: an estimate. ' +
        'It counts the load generators (the bench, the fake Google) and the probes\' connects, which makes it low, and assumes every process scales to the whole machine, ' +
        'which makes it high (the Temporal dev server writes SQLite one transaction at a time).',
  ].join('\n');
}

function bottlenecks(runs: LifecycleRun[]): string {
  return runs
    .map((run) => {
      const ranked = Object.entries(run.window.cpuPercent).sort((a, b) => b[1] - a[1]);
      const total = ranked.reduce((sum, [, percent]) => sum + percent, 0);
      return `- N=${run.size}: ${ranked.map(([name, percent]) => `${name} ${percent}%`).join(', ')} (total ${format(total, 0)}% of one core)`;
    })
    .join('\n');
}

function stragglerList(runs: LifecycleRun[], timeoutSeconds: number): string {
  const lines = runs.flatMap((run) =>
    run.restart.recoverySeconds !== null
      ? []
      : [`- N=${run.size}: recovery did not complete within ${timeoutSeconds} s of the worker being up; still overdue (first ${run.restart.stragglers.length}): ` +
          run.restart.stragglers.map((straggler) => `${straggler.id} ${straggler.status}, token expires ${straggler.accessTokenExpiresAt ?? '—'}, workflow ${straggler.workflowStatus}`).join('; ')],
  );
  return lines.length === 0 ? 'Recovery completed at every N.' : lines.join('\n');
}

function lostList(runs: LifecycleRun[]): string {
  const lines = runs.flatMap((run) => run.lost.slice(0, 10).map((lost) => `- N=${run.size}: ${lost.id} ${lost.status} ${lost.lastErrorKind ?? ''} ${lost.lastErrorMessage ?? ''}`.trim()));
  return lines.length === 0 ? 'None.' : lines.join('\n');
}

export function lifecycleMarkdown(report: Report): string {
  const { runs, settings, policy } = report;
  const tables = Array.from(new Set(runs.flatMap((run) => Object.keys(run.rows.perTable)))).sort();
  const processes = Array.from(new Set(runs.flatMap((run) => Object.keys(run.window.cpuPercent))));
  return [
    '## Lifecycle (`bench/lifecycle`)',
    '',
    machineMarkdown(report.machine),
    `- Command: \`${report.command}\``,
    `- Settings: token lifetime ${runs.map((run) => `${run.accessTokenLifetimeSeconds} s at N=${run.size}`).join(', ')}, observation window ${settings.observeSeconds} s, connect concurrency ${settings.concurrency}, ` +
      `a probe connection every ${settings.probeIntervalSeconds} s during the window, worker outage ${settings.outageSeconds} s, history sample ${settings.historySample} connections; ` +
      `platform environment ${Object.entries(settings.platformEnvironment).map(([name, value]) => `${name}=${value}`).join(' ')}` +
      (settings.platformEnvironment.WORKER_WORKFLOW_BUNDLE ? '' : '; the worker runs from a workflow bundle the bench builds first (`WORKER_WORKFLOW_BUNDLE`, as in the image)'),
    `- Refresh policy (as the platform derives it): ${JSON.stringify(policy)}; planned margin without jitter ${runs.map((run) => `${format(plannedMarginMs(run.accessTokenLifetimeSeconds, policy) / 1000, 1)} s at N=${run.size}`).join(', ')}`,
    `- Raw numbers: \`${path.relative(path.dirname(path.dirname(report.rawFile)), report.rawFile)}\``,
    '',
    'Each N runs on a stack of its own on loopback, each part its own process: a fresh PostgreSQL database (migrated), a Temporal dev server ' +
      '(`temporal server start-dev`, SQLite, task queues of one partition as in `npm run dev`), the fake Google (`bench/lifecycle/fake-google-process.ts`), the api-server (`tsx api/main.ts`, ' +
      '`APP_ENV=production`, loopback http `PUBLIC_BASE_URL`) and the worker (`tsx worker/main.ts`). Users and sessions are seeded in SQL; every ' +
      'connection goes through auth → fake Google → callback with the user\'s session, each user with its own Google account.',
    '',
    'Definitions: *connect latency* is from the driver sending the callback to the connection\'s `IntegrationConnect` success audit row ' +
      '(written in the transaction that makes it `active`). The *window* opens once no connection is pending, no earlier than one token ' +
      'lifetime after the first connect and no earlier than one mean refresh interval (below) after the last activation, so every connection is in its refresh cycle; *probes* connect during it, while refreshes run. A refresh\'s *deadline* is ' +
      '`refreshDueAt` of the access token it replaces with jitter 0 (from the token\'s issue time at the fake); *late* is the refresh grant\'s arrival ' +
      'at the fake minus that deadline (negative: early); *slack* is the replaced token\'s expiry minus the arrival. *Refreshes per token lifetime* = ' +
      'refreshes in the window / refreshes due in it, where refreshes due = the seconds within the window since each connection\'s activation (every connection ' +
      'with an `IntegrationConnect` success, probes from their activation on) / the *mean refresh interval*, the mean time a token is kept: its lifetime less ' +
      'the planned margin and half the largest jitter (the jitter setting, at most a quarter of the margin); one refresh per token is 1.0; *early* refreshes replaced a token younger than half its lifetime. *History events per cycle*: from one cycle\'s first ' +
      '`refreshConnectionTokens` ActivityTaskScheduled to the next cycle\'s within one run (schedules less than half a lifetime apart belong to one cycle); ' +
      'the sample is of connections active before the window opened (no probe); runs continue-as-new, so each sampled workflow\'s chain of runs is followed back to the run open at the window\'s start, and *events per cycle, amortised* = ' +
      'every event of those runs whose time falls in the window (continue-as-new and the new run\'s first events included) / the cycles begun in the window. ' +
      '*Recovery* after the restart: from the worker\'s `worker started` line until no `active` connection has an access token expiring at or before ' +
      '(that moment + the planned margin), i.e. every refresh that fell due before the worker was back has been done; *first refresh* is, for each connection ' +
      'overdue when it was up, the time from then to its `last_refreshed_at` as first seen (polled every 0.5 s). Worker RSS sums the worker\'s ' +
      'process tree (tsx and node) from /proc every 2 s. CPU is per process tree over the window, in percent of one core; PostgreSQL counts the ' +
      'backends of the bench\'s database alive at the window\'s end.',
    '',
    table('Connect latency (callback sent → active, seconds)', runs, [
      ['ramp: callbacks per second', (run) => run.ramp.requestsPerSecond],
      ['ramp: seconds until no connection was pending', (run) => run.ramp.allSettledSeconds],
      ['ramp p50', (run) => run.ramp.latencySeconds.p50],
      ['ramp p99', (run) => run.ramp.latencySeconds.p99],
      ['while refreshes run (probes) p50', (run) => run.window.probes.latencySeconds.p50],
      ['while refreshes run (probes) p99', (run) => run.window.probes.latencySeconds.p99],
      ['probes made', (run) => run.window.probes.made],
      ['failed connect requests (ramp + probes)', (run) => run.ramp.failedRequests.length + run.window.probes.failedRequests.length],
    ]),
    '',
    table('Refreshes over the window', runs, [
      ['token lifetime (s)', (run) => run.accessTokenLifetimeSeconds],
      ['active connections at window start', (run) => run.window.activeAtStart],
      ['refreshes due per second (active at start / mean refresh interval)', (run) => run.window.activeAtStart / (meanRefreshIntervalMs(run.accessTokenLifetimeSeconds, policy) / 1000)],
      ['refreshes', (run) => run.window.refreshes.refreshes],
      ['sustained refreshes per second', (run) => run.window.refreshesPerSecond],
      ['refreshes per token lifetime', (run) => run.window.refreshesPerLifetime],
      ['refreshes of a token younger than half its lifetime', (run) => run.window.refreshes.early],
      ['late vs deadline p50 (s)', (run) => run.window.refreshes.lateSeconds.p50],
      ['late vs deadline p99 (s)', (run) => run.window.refreshes.lateSeconds.p99],
      ['late vs deadline max (s)', (run) => run.window.refreshes.lateSeconds.max],
      ['refreshes after their deadline', (run) => run.window.refreshes.lateCount],
      ['least slack before expiry (s)', (run) => run.window.refreshes.slackSeconds.min],
      ['refreshes after expiry', (run) => run.window.refreshes.afterExpiry],
      ['provider calls with an expired token', (run) => run.window.refreshes.expiredTokenCalls],
    ]),
    '',
    table('Temporal history per refresh cycle (sampled connections)', runs, [
      ['connections sampled', (run) => run.history.connections],
      ['runs read (continue-as-new chains)', (run) => run.history.runs],
      ['complete cycles seen within a run', (run) => run.history.cycles],
      ['events per cycle, mean', (run) => run.history.eventsPerCycle.mean],
      ['events per cycle, max', (run) => run.history.eventsPerCycle.max],
      ['refreshConnectionTokens per cycle, mean', (run) => run.history.refreshActivitiesPerCycle.mean],
      ['UpsertWorkflowSearchAttributes per cycle, mean', (run) => run.history.searchAttributeUpsertsPerCycle.mean],
      ['WorkflowPropertiesModified (memo) per cycle, mean', (run) => run.history.memoUpdatesPerCycle.mean],
      ['cycles begun in the window', (run) => run.history.amortised.cycles],
      ['events per cycle, amortised over the window (per connection per token lifetime)', (run) => run.history.amortised.eventsPerCycle],
    ]),
    '',
    table('Worker memory (RSS of the worker\'s process tree, MB)', runs, [
      ['peak', (run) => run.workerRssBytes.peak / MB],
      ['at the end (after the restart)', (run) => run.workerRssBytes.end / MB],
    ]),
    '',
    table('CPU over the window (% of one core)', runs, processes.map((name) => [name, (run) => run.window.cpuPercent[name]] as [string, (run: LifecycleRun) => Cell])),
    '',
    table('Database rows per connection', runs, [
      ['connections (rows of integration_connections)', (run) => run.rows.connections],
      ['all tables', (run) => run.rows.total / run.rows.connections],
      ...tables.map((name) => [name, (run: LifecycleRun) => (run.rows.perTable[name] ?? 0) / run.rows.connections] as [string, (run: LifecycleRun) => Cell]),
    ]),
    '',
    table(`Worker restart with N live runs (SIGTERM, down ${settings.outageSeconds} s, start again)`, runs, [
      ['stop (SIGTERM to exit, s)', (run) => run.restart.stopSeconds],
      ['outage (SIGTERM to new spawn, s)', (run) => run.restart.outageSeconds],
      ['start-up (spawn to "worker started", s)', (run) => run.restart.startupSeconds],
      ['connections overdue when it was up', (run) => run.restart.backlogAtStart],
      ['recovery (s)', (run) => run.restart.recoverySeconds],
      ['first refresh of an overdue connection p50 (s)', (run) => run.restart.firstRefreshSeconds.p50],
      ['first refresh of an overdue connection p99 (s)', (run) => run.restart.firstRefreshSeconds.p99],
      ['first refresh of an overdue connection max (s)', (run) => run.restart.firstRefreshSeconds.max],
      ['overdue connections never refreshed', (run) => run.restart.backlogAtStart - run.restart.firstRefreshSeconds.count],
      ['refreshes from SIGTERM to recovery', (run) => run.restart.refreshes.refreshes],
      ['of which after expiry', (run) => run.restart.refreshes.afterExpiry],
      ['late vs deadline max (s)', (run) => run.restart.refreshes.lateSeconds.max],
      ['provider calls with an expired token', (run) => run.restart.refreshes.expiredTokenCalls],
    ]),
    '',
    stragglerList(runs, settings.recoveryTimeoutSeconds),
    '',
    table('Connections lost (not active at the end)', runs, [['lost', (run) => run.lost.length]]),
    '',
    lostList(runs),
    '',
    targets(report),
    '',
    '### Where the time goes',
    '',
    bottlenecks(runs),
  ].join('\n');
}
