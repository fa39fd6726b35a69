import { sql } from 'slonik';
import type { Connection } from '@temporalio/client';
import type { DatabasePool } from '../db/pool';

/** Named probes; each resolves when its dependency can do work and throws (saying why) when not. */
export type ReadinessChecks = Record<string, () => Promise<unknown>>;

export interface Readiness {
  status: 'ready' | 'not_ready';
  /** `ok`, or what is wrong, per check. */
  checks: Record<string, string>;
}

// An orchestrator's probe gives up after a few seconds; a check hanging on a half-open socket must answer before that.
const CHECK_TIMEOUT_MS = 2500;

/** What every process of the platform needs to do work: its database and the Temporal frontend. */
export function platformReadinessChecks(db: DatabasePool, temporal: Pick<Connection, 'workflowService' | 'withDeadline'>): ReadinessChecks {
  return {
    database: () => db.oneFirst(sql.unsafe`SELECT 1`),
    // The deadline also ends the client's own retries, which would otherwise outlive the probe.
    temporal: () => temporal.withDeadline(Date.now() + CHECK_TIMEOUT_MS, () => temporal.workflowService.getSystemInfo({})),
  };
}

export async function checkReadiness(checks: ReadinessChecks): Promise<Readiness> {
  const results = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => [name, await withTimeout(check()).then(() => 'ok', (error: Error) => `failed: ${error.message}`)] as const),
  );
  return { status: results.every(([, result]) => result === 'ok') ? 'ready' : 'not_ready', checks: Object.fromEntries(results) };
}

function withTimeout(check: Promise<unknown>): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
  });
  return Promise.race([check, timeout]).finally(() => clearTimeout(timer));
}
