import { pathToFileURL } from 'node:url';
import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';
import { ENCRYPTED_COLUMNS } from '../db/encrypted-columns';
import { createDatabasePool } from '../db/pool';
import { ConfigError, loadConfig } from '../platform/config';
import type { IntegrationCrypto } from '../platform/integration-crypto';
import { createIntegrationCrypto } from '../platform/services';

/**
 * Moves every encrypted value onto the active key (design invariant 6), so that a previous key
 * can be dropped from INTEGRATION_ENCRYPTION_PREVIOUS_KEYS afterwards.
 *
 * - Each column of ENCRYPTED_COLUMNS is walked in primary-key order (keyset pagination), one short
 *   transaction per batch, so no long-lived locks and no offset scans.
 * - Each write is compare-and-set on the old ciphertext: a concurrent writer (a token refresh) always
 *   wins, and it wrote under the active key anyway. Nothing else (token_version, updated_at) is touched.
 * - Values already under the active key are skipped, so a rerun resumes where an interrupted one stopped.
 * - A value that cannot be decrypted (unknown key, altered, copied from another row) is reported and
 *   left untouched.
 */

export const DEFAULT_BATCH_SIZE = 500;

export interface ReencryptProgress {
  table: string;
  column: string;
  /** Values of this column moved onto the active key so far. */
  reencrypted: number;
  /** Values of this column that were already under the active key. */
  alreadyCurrent: number;
}

export interface ReencryptFailure {
  table: string;
  column: string;
  id: string;
  reason: string;
}

export interface ReencryptOptions {
  batchSize?: number;
  /** Called after every batch with the running totals of the column, and at least once per column. */
  onProgress?: (progress: ReencryptProgress) => void;
}

export interface ReencryptResult {
  reencrypted: number;
  failed: ReencryptFailure[];
}

const encryptedValueRow = z.object({ id: z.string(), value: z.string() });

export async function reencryptAll(
  db: DatabasePool,
  crypto: IntegrationCrypto,
  options: ReencryptOptions = {},
): Promise<ReencryptResult> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);

  let reencrypted = 0;
  const failed: ReencryptFailure[] = [];

  for (const [table, columns] of Object.entries(ENCRYPTED_COLUMNS)) {
    for (const column of columns) {
      const progress: ReencryptProgress = { table, column, reencrypted: 0, alreadyCurrent: 0 };
      const tableIdentifier = sql.identifier([table]);
      const columnIdentifier = sql.identifier([column]);
      let lastId: string | undefined;

      for (;;) {
        const after = lastId === undefined ? sql.fragment`` : sql.fragment`AND id > ${lastId}`;
        const batchCount = await db.transaction(async (transaction) => {
          const rows = await transaction.any(sql.type(encryptedValueRow)`
            SELECT id::text AS id, ${columnIdentifier} AS value
            FROM ${tableIdentifier}
            WHERE ${columnIdentifier} IS NOT NULL ${after}
            ORDER BY id
            LIMIT ${batchSize}`);

          for (const row of rows) {
            if (!crypto.needsReencryption(row.value)) {
              progress.alreadyCurrent += 1;
              continue;
            }
            let replacement: string;
            try {
              const binding = { table, column, rowId: row.id };
              replacement = crypto.encrypt(crypto.decrypt(row.value, binding), binding);
            } catch (error) {
              failed.push({ table, column, id: row.id, reason: error instanceof Error ? error.message : String(error) });
              continue;
            }
            // Compare-and-set: if a writer changed the value since we read it, its value stands.
            const result = await transaction.query(sql.unsafe`
              UPDATE ${tableIdentifier} SET ${columnIdentifier} = ${replacement}
              WHERE id = ${row.id} AND ${columnIdentifier} = ${row.value}`);
            if (result.rowCount === 1) progress.reencrypted += 1;
          }

          const lastRow = rows.at(-1);
          if (lastRow) lastId = lastRow.id;
          return rows.length;
        });

        options.onProgress?.({ ...progress });
        if (batchCount < batchSize) break;
      }

      reencrypted += progress.reencrypted;
    }
  }

  return { reencrypted, failed };
}

/** The whole command: configuration from the environment, progress on stdout; answers the exit code. */
export async function runReencrypt(): Promise<number> {
  let crypto: IntegrationCrypto;
  let databaseUrl: string;
  try {
    const config = loadConfig(process.env, ['DATABASE_URL', 'INTEGRATION_ENCRYPTION_KEY']);
    crypto = createIntegrationCrypto(config);
    if (!config.databaseUrl) throw new ConfigError(['DATABASE_URL: is required to re-encrypt']);
    databaseUrl = config.databaseUrl;
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`reencrypt: ${error.message}`);
      return 2;
    }
    throw error;
  }

  console.log(`reencrypt: active key is "${crypto.activeKeyId}"`);
  const pool = await createDatabasePool(databaseUrl, { maximumPoolSize: 1 });
  let result: ReencryptResult;
  try {
    result = await reencryptAll(pool, crypto, {
      onProgress: (progress) =>
        console.log(
          `${progress.table}.${progress.column}: ${progress.reencrypted} re-encrypted, ${progress.alreadyCurrent} already current`,
        ),
    });
  } finally {
    await pool.end();
  }

  for (const failure of result.failed) {
    console.error(`FAILED ${failure.table}.${failure.column} id=${failure.id}: ${failure.reason}`);
  }
  console.log(`reencrypt: ${result.reencrypted} value(s) re-encrypted, ${result.failed.length} failed`);
  if (result.failed.length > 0) {
    console.error('reencrypt: the failed values were left untouched; keep their keys readable until they are dealt with');
    return 1;
  }
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await runReencrypt();
}
