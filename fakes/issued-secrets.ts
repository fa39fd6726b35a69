import { appendFileSync, existsSync, readFileSync } from 'node:fs';

/** Names the file every fake in every process of a run appends the secrets it issues to, one a line. */
export const ISSUED_SECRETS_LEDGER_VARIABLE = 'ISSUED_SECRETS_LEDGER';

const issuedInThisProcess = new Set<string>();

/**
 * The secrets one fake issued (tokens, codes, assertions). Each one pushed is also reported to this
 * process's list and, when ISSUED_SECRETS_LEDGER names a file, to that file, so a secret scan can look
 * for every secret any fake ever issued, also in what other processes wrote.
 */
export class IssuedSecrets extends Array<string> {
  override push(...secrets: string[]): number {
    reportIssuedSecrets(secrets);
    return super.push(...secrets);
  }
}

export function reportIssuedSecrets(secrets: readonly string[]): void {
  for (const secret of secrets) issuedInThisProcess.add(secret);
  const ledger = process.env[ISSUED_SECRETS_LEDGER_VARIABLE];
  if (ledger && secrets.length > 0) appendFileSync(ledger, secrets.map((secret) => `${secret}\n`).join(''));
}

/** Every secret a fake issued in this process, and those in the run's ledger file when there is one. */
export function everyIssuedSecret(): Set<string> {
  const secrets = new Set(issuedInThisProcess);
  const ledger = process.env[ISSUED_SECRETS_LEDGER_VARIABLE];
  if (ledger && existsSync(ledger)) {
    for (const line of readFileSync(ledger, 'utf8').split('\n')) if (line) secrets.add(line);
  }
  return secrets;
}
