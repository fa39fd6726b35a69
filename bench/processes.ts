import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { repoRoot } from '../scripts/temporal-binaries';

/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these ticks on every mainstream kernel. */
const CLOCK_TICKS_PER_SECOND = 100;
const PAGE_BYTES = 4096;

/**
 * One part of a benchmark's stack, in its own OS process and process group, so stopping it (or the
 * bench dying) takes its children along. Its output goes to a log file; lines can be waited for.
 */
export class ServiceProcess {
  private readonly lineWaiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  readonly exited: Promise<number | null>;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logFile: string,
  ) {
    const log = createWriteStream(logFile, { flags: 'a' });
    let pending = '';
    const onData = (chunk: Buffer) => {
      log.write(chunk);
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        for (const waiter of [...this.lineWaiters]) {
          if (!waiter.pattern.test(line)) continue;
          this.lineWaiters.splice(this.lineWaiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => child.once('exit', (code) => {
      log.end();
      resolve(code);
    }));
  }

  static start(name: string, command: string, args: string[], options: { env: Record<string, string | undefined>; logDir: string }): ServiceProcess {
    const child = spawn(command, args, { cwd: repoRoot, env: options.env as NodeJS.ProcessEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    return new ServiceProcess(name, child, path.join(options.logDir, `${name}.log`));
  }

  /** `tsx <script>` from the repository, as `npm start` / `npm run worker` run them. */
  static tsx(name: string, script: string, options: { env: Record<string, string | undefined>; logDir: string }): ServiceProcess {
    return ServiceProcess.start(name, path.join(repoRoot, 'node_modules', '.bin', 'tsx'), [script], options);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The first output line matching `pattern` from now on; fails when the process exits first or time runs out. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no line matching ${pattern} within ${timeoutMs} ms (log: ${this.logFile})`)), timeoutMs);
      this.lineWaiters.push({ pattern, resolve: (line) => {
        clearTimeout(timer);
        resolve(line);
      } });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code}) before printing ${pattern} (log: ${this.logFile})`));
      });
    });
  }

  /** SIGTERM to the whole group; SIGKILL after `graceMs`. */
  async stop(graceMs = 45_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.signalGroup('SIGTERM');
    const timer = setTimeout(() => this.signalGroup('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
    // The group leader may be gone while a grandchild lingers.
    this.signalGroup('SIGKILL');
  }

  /** For process 'exit' handlers, which cannot wait. */
  killNow(): void {
    this.signalGroup('SIGKILL');
  }

  private signalGroup(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch {
      // the group is gone already
    }
  }
}

export interface ProcessUsage {
  rssBytes: number;
  /** user + system CPU seconds since the processes started. */
  cpuSeconds: number;
}

/** RSS and CPU time summed over a process and all its descendants, from /proc. */
export async function processTreeUsage(rootPid: number): Promise<ProcessUsage> {
  const stats = await allProcessStats();
  const members = new Set([rootPid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const stat of stats) {
      if (!members.has(stat.pid) && members.has(stat.ppid)) {
        members.add(stat.pid);
        grew = true;
      }
    }
  }
  return sumUsage(stats.filter((stat) => members.has(stat.pid)));
}

/** CPU seconds of each of these processes still running (e.g. the PostgreSQL backends of one database). */
export async function cpuSecondsByPid(pids: number[]): Promise<Map<number, number>> {
  const wanted = new Set(pids);
  const stats = (await allProcessStats()).filter((stat) => wanted.has(stat.pid));
  return new Map(stats.map((stat) => [stat.pid, stat.cpuTicks / CLOCK_TICKS_PER_SECOND]));
}

interface ProcessStat {
  pid: number;
  ppid: number;
  cpuTicks: number;
  rssPages: number;
}

function sumUsage(stats: ProcessStat[]): ProcessUsage {
  return {
    rssBytes: stats.reduce((sum, stat) => sum + stat.rssPages * PAGE_BYTES, 0),
    cpuSeconds: stats.reduce((sum, stat) => sum + stat.cpuTicks, 0) / CLOCK_TICKS_PER_SECOND,
  };
}

async function allProcessStats(): Promise<ProcessStat[]> {
  const pids = (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry));
  const stats = await Promise.all(pids.map(async (pid) => {
    try {
      const text = await readFile(`/proc/${pid}/stat`, 'utf8');
      // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      return { pid: Number(pid), ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]), rssPages: Number(fields[21]) };
    } catch {
      return undefined; // exited meanwhile
    }
  }));
  return stats.filter((stat): stat is ProcessStat => stat !== undefined);
}
