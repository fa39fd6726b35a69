import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { ISSUED_SECRETS_LEDGER_VARIABLE } from '../../fakes/issued-secrets';
import { repoRoot } from '../../scripts/temporal-binaries';
import setUpTestRun from '../global-setup';
import { faultTable, readFaultLedger } from './fault-ledger';

declare module 'vitest' {
  export interface ProvidedContext {
    /** This run's fault ledger: each scenario appends its rows (see fault-ledger.ts). */
    chaosFaultLedger: string;
    /** This run's file of every secret the fakes issued (fakes/issued-secrets.ts), for the secret scan. */
    issuedSecretsLedger: string;
  }
}

const CHAOS_DATA = path.join(repoRoot, '.data', 'chaos');
/** Where the lead copies docs/reliability.md's table from. */
export const LAST_RUN_TABLE = path.join(CHAOS_DATA, 'last-run.md');

/**
 * The suite's own setup (Postgres, Temporal binaries), plus files of this run only: its fault ledger and
 * its ledger of issued secrets, so two runs at once never mix. At the end the fault table is printed
 * and written to .data/chaos/last-run.md.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  mkdirSync(CHAOS_DATA, { recursive: true });
  const run = `${process.pid}-${Date.now()}`;
  const faultLedger = path.join(CHAOS_DATA, `faults-${run}.jsonl`);
  const secretsLedger = path.join(CHAOS_DATA, `issued-secrets-${run}.txt`);
  writeFileSync(faultLedger, '');
  writeFileSync(secretsLedger, '', { mode: 0o600 });
  project.provide('chaosFaultLedger', faultLedger);
  project.provide('issuedSecretsLedger', secretsLedger);
  // Fakes read the variable in whatever process they run (setup-run.ts sets it in each test process too).
  process.env[ISSUED_SECRETS_LEDGER_VARIABLE] = secretsLedger;
  const tearDown = await setUpTestRun(project);
  return async () => {
    await tearDown();
    rmSync(secretsLedger, { force: true });
    const table = faultTable(readFaultLedger(faultLedger));
    console.log(`\nchaos: faults injected and their outcomes (${path.relative(repoRoot, faultLedger)})\n${table}\n`);
    writeFileSync(LAST_RUN_TABLE, `Chaos run of ${new Date().toISOString()} (\`npm run test:chaos\`)\n\n${table}\n`);
  };
}
