import type { TestProject } from 'vitest/node';
import setUpTestRun from '../global-setup';
import { faultTable, readFaultLedger, resetFaultLedger } from './fault-ledger';

/** The suite's own setup (Postgres, Temporal binaries), plus the fault table printed at the end. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  resetFaultLedger();
  const tearDown = await setUpTestRun(project);
  return async () => {
    await tearDown();
    const records = readFaultLedger();
    console.log(`\nchaos: faults injected and their outcomes\n${faultTable(records)}\n`);
  };
}
