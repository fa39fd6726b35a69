import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSX = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs one of the repository's scripts (e.g. scripts/admin.ts) as an operator does: a separate process
 * configured only by environment variables (the test environment, the database, and `env`), with
 * `stdin` as its whole standard input.
 */
export function runScript(script: string, args: string[], options: { databaseUrl: string; env?: Record<string, string>; stdin?: string }): Promise<CliRun> {
  const env = { PATH: process.env.PATH ?? '', APP_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: options.databaseUrl, ...options.env };
  return new Promise((resolve) => {
    const child = execFile(TSX, [script, ...args], { cwd: REPO_ROOT, env, timeout: 50_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
    child.stdin?.end(options.stdin ?? '');
  });
}
