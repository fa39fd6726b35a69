import { expect } from 'vitest';
import { scanPlatformForSecrets } from '../../helpers/secret-scan';
import { TEST_PASSWORD, type TestPlatform } from '../../helpers/platform';
import { recordFault } from '../fault-ledger';

/**
 * Issue 11, "Secrets", at the end of a chaos scenario and before its database and Temporal server go:
 * every token, code and secret any fake of the run issued (the run's ledger), the platform's own
 * credentials and keys, and what our authorization server issued in the scenario (sessions), looked
 * for in every database column, every Temporal history (as stored and as the codec decodes it) and
 * every log line captured. One row in the fault table; any plaintext hit fails the scenario.
 */
export async function expectNoSecretLeft(
  scenario: string,
  platform: TestPlatform,
  options: { logs: readonly string[]; ownSecrets?: Iterable<string>; providerSecrets?: Iterable<string> },
): Promise<void> {
  const { config } = platform;
  const platformSecrets = [config.encryption.activeKey, config.payloadEncryption.activeKey, TEST_PASSWORD].filter((secret): secret is string => Boolean(secret));
  const scan = await scanPlatformForSecrets(platform, {
    logs: options.logs,
    extraSecrets: [...platformSecrets, ...(options.ownSecrets ?? []), ...(options.providerSecrets ?? [])],
  });
  recordFault({
    fault: `secret scan after the chaos run: ${scenario}`,
    injected: scan.secretsLookedFor,
    outcomes: {
      plaintext_hits: scan.hits.length,
      histories_scanned: scan.historiesScanned,
      rows_scanned: scan.rowsScanned,
      log_lines_scanned: scan.logLinesScanned,
    },
    invariant: 'no token, code or secret in plaintext in a database column, a Temporal history (stored or decoded) or a log line',
  });
  expect(scan.hits).toEqual([]);
  // A scan that read nothing proves nothing.
  expect(scan.historiesScanned).toBeGreaterThan(0);
  expect(scan.logLinesScanned).toBeGreaterThan(0);
}
