// `npm run bench [-- <suite>... [--sizes 1000,5000,10000]]`: the benchmarks, each suite on stacks of its own on loopback.
//   npm run bench                                   every suite, its default sizes
//   npm run bench -- lifecycle --sizes 200          one suite at one size
// Suites: lifecycle (N Google connections through the real endpoints, refreshes, a worker restart).
// lifecycle's settings (environment): BENCH_LIFECYCLE_SIZES (1000,5000,10000), BENCH_LIFECYCLE_OBSERVE_SECONDS (300),
//   BENCH_LIFECYCLE_TOKEN_LIFETIME_SECONDS (120), BENCH_LIFECYCLE_CONCURRENCY (32), BENCH_LIFECYCLE_PROBE_INTERVAL_SECONDS (2),
//   BENCH_LIFECYCLE_OUTAGE_SECONDS (30), BENCH_LIFECYCLE_HISTORY_SAMPLE (20), BENCH_LIFECYCLE_SETTLE_TIMEOUT_SECONDS (900),
//   BENCH_LIFECYCLE_RECOVERY_TIMEOUT_SECONDS (900);
//   WORKER_* and TOKEN_REFRESH_* are passed to the api-server and the worker (margin 20 s and jitter 10 s unless set).
// DATABASE_URL: the PostgreSQL server the bench creates (and drops) its databases on; unset, an embedded one is started.
// Results: bench/RESULTS.md (each suite rewrites only its section) and the raw numbers in bench/results/*.json.
// Ctrl-C tears everything down (processes and databases). Sizes of 5,000 and more take tens of minutes each.
import { lifecycleSettings, parseSizes, runLifecycleSuite } from './lifecycle/main';
import { Teardowns } from './teardown';

type Suite = (options: { sizes: number[] | undefined; teardowns: Teardowns; command: string }) => Promise<void>;

const SUITES: Record<string, Suite> = {
  lifecycle: ({ sizes, teardowns, command }) => runLifecycleSuite(lifecycleSettings(process.env, sizes), teardowns, command),
};

function parseArguments(args: string[]): { suites: string[]; sizes: number[] | undefined } {
  const suites: string[] = [];
  let sizes: number[] | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--sizes') sizes = parseSizes(args[++i] ?? '');
    else if (arg.startsWith('--sizes=')) sizes = parseSizes(arg.slice('--sizes='.length));
    else if (arg in SUITES) suites.push(arg);
    else throw new Error(`unknown argument ${arg}; suites: ${Object.keys(SUITES).join(', ')}`);
  }
  return { suites: suites.length > 0 ? suites : Object.keys(SUITES), sizes };
}

const args = process.argv.slice(2);
const { suites, sizes } = parseArguments(args);
const teardowns = new Teardowns();
const command = ['npm run bench', ...(args.length > 0 ? ['--', ...args] : [])].join(' ');
for (const suite of suites) await SUITES[suite]!({ sizes, teardowns, command });
