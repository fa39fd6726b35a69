import { spawn, type ChildProcess } from 'node:child_process';
import { repoRoot } from '../../../scripts/temporal-binaries';
import { eventually } from '../../helpers/eventually';

/** The production worker (`npm run worker`) as its own process, configured by environment variables only. */
export interface ChaosWorkerProcess {
  child: ChildProcess;
  /** The tail of what it wrote to stdout and stderr, for a failing test's message. */
  output(): string;
  /** Every line it wrote to stdout and stderr (its JSON log), for the secret scan. */
  log(): string;
  /** Resolves once /readyz answers 200; rejects when the process ends first. */
  ready(timeoutMs?: number): Promise<void>;
  /** SIGKILL: no shutdown, no grace, activities in flight are simply gone. Resolves once the process is gone. */
  kill(): Promise<void>;
}

/**
 * Starts `worker/main.ts` under tsx with exactly `environment` (plus PATH and a health port the
 * system picks, read from its 'worker started' line), as an orchestrator would. The caller passes the
 * settings platform/config.ts reads.
 */
export async function startWorkerProcess(environment: Record<string, string>): Promise<ChaosWorkerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'worker/main.ts'], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, API_HOST: '127.0.0.1', WORKER_HEALTH_PORT: '0', ...environment },
  });
  let output = '';
  const chunks: string[] = [];
  const keep = (chunk: string) => {
    chunks.push(chunk);
    // A failing run's message shows the tail only.
    output = (output + chunk).slice(-20_000);
  };
  child.stdout!.setEncoding('utf8').on('data', keep);
  child.stderr!.setEncoding('utf8').on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let ended = false;
  void exited.then(() => (ended = true));
  const healthPort = (): number | undefined => {
    // The last piece may be a line still being written.
    for (const line of chunks.join('').split('\n').slice(0, -1)) {
      if (!line.includes('"worker started"')) continue;
      const started = JSON.parse(line) as { healthPort?: number };
      return started.healthPort;
    }
    return undefined;
  };

  return {
    child,
    output: () => output,
    log: () => chunks.join(''),
    async ready(timeoutMs = 90_000) {
      await eventually(
        async () => {
          if (ended) throw new Error(`worker process ended before it was ready:\n${output}`);
          const port = healthPort();
          if (port === undefined) return false;
          const answer = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
          return answer?.status === 200;
        },
        timeoutMs,
        'worker process ready',
      );
    },
    async kill() {
      if (!ended) child.kill('SIGKILL');
      await exited;
    },
  };
}
