import { inject } from 'vitest';
import { ISSUED_SECRETS_LEDGER_VARIABLE } from '../../fakes/issued-secrets';

// Every fake in a scenario's process reports the secrets it issues to the run's ledger, which the
// secret scan at the end of each scenario reads (test/chaos/harness/secret-scan-after-run.ts).
process.env[ISSUED_SECRETS_LEDGER_VARIABLE] = inject('issuedSecretsLedger');
