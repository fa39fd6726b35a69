import { appendFileSync, mkdirSync, readFileSync, existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../scripts/temporal-binaries';

/**
 * What a chaos scenario injected and what came of it. Scenarios append one line per fault to a file the
 * chaos run's teardown reads, so `npm run test:chaos` prints the table docs/reliability.md shows.
 */
export interface FaultRecord {
  /** The fault, as the reliability table names it ("worker SIGKILL during a refresh storm"). */
  fault: string;
  /** How many times the fault was injected in this run. */
  injected: number;
  /** Outcome counts, e.g. `{ active: 500, needs_reauth: 0 }` or `{ applied_once: 3000 }`. */
  outcomes: Record<string, number>;
  /** The invariant the outcome proves. */
  invariant: string;
}

const LEDGER = path.join(repoRoot, '.data', 'chaos', 'faults.jsonl');

export function resetFaultLedger(): void {
  rmSync(LEDGER, { force: true });
}

export function recordFault(record: FaultRecord): void {
  mkdirSync(path.dirname(LEDGER), { recursive: true });
  appendFileSync(LEDGER, `${JSON.stringify(record)}\n`);
}

export function readFaultLedger(): FaultRecord[] {
  if (!existsSync(LEDGER)) return [];
  return readFileSync(LEDGER, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as FaultRecord);
}

/** The table as docs/reliability.md shows it (Markdown, so it can be pasted there as is). */
export function faultTable(records: FaultRecord[]): string {
  const rows = records.map(({ fault, injected, outcomes, invariant }) => {
    const counts = Object.entries(outcomes)
      .map(([outcome, count]) => `${outcome}: ${count}`)
      .join(', ');
    return `| ${fault} | ${injected} | ${counts} | ${invariant} |`;
  });
  return ['| Fault | Injected | Outcomes | Invariant proved |', '| --- | ---: | --- | --- |', ...rows].join('\n');
}
