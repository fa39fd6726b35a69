import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { inject } from 'vitest';

/**
 * What a chaos scenario injected and what came of it. Scenarios append one line per fault to the run's
 * own ledger file (global-setup.ts names it), so `npm run test:chaos` prints the table docs/reliability.md
 * shows and concurrent runs never mix their rows.
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

/** In a scenario: appends to the ledger of the run it belongs to. */
export function recordFault(record: FaultRecord): void {
  appendFileSync(inject('chaosFaultLedger'), `${JSON.stringify(record)}\n`);
}

export function readFaultLedger(ledger: string): FaultRecord[] {
  if (!existsSync(ledger)) return [];
  return readFileSync(ledger, 'utf8')
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
