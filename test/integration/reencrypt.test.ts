import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { sql, type DatabasePool } from 'slonik';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { ENCRYPTED_COLUMNS } from '../../db/encrypted-columns';
import { migrate } from '../../db/migrate';
import { createDatabasePool } from '../../db/pool';
import { insertUser } from '../../db/queries/users';
import { generateEncryptionKey, IntegrationCrypto } from '../../platform/integration-crypto';
import { reencryptAll, type ReencryptProgress } from '../../scripts/reencrypt';
import { createTestDatabase, type TestDatabase } from '../helpers/database';

const KEY_A = `key-a:${generateEncryptionKey()}`;
const KEY_B = `key-b:${generateEncryptionKey()}`;
const KEY_C = `key-c:${generateEncryptionKey()}`;
const underA = IntegrationCrypto.fromKeyTexts(KEY_A);
const underC = IntegrationCrypto.fromKeyTexts(KEY_C);
const rotated = IntegrationCrypto.fromKeyTexts(KEY_B, [KEY_A]);

type Table = keyof typeof ENCRYPTED_COLUMNS;

let database: TestDatabase;
let db: DatabasePool;
let userId: string;

function keyIdOf(envelope: string): string | undefined {
  return envelope.split('.')[1];
}

async function readValue(table: Table, column: string, id: string): Promise<string | null> {
  const value = await db.oneFirst(sql.unsafe`
    SELECT ${sql.identifier([column])} FROM ${sql.identifier([table])} WHERE id = ${id}`);
  return value as string | null;
}

async function readAll(): Promise<Map<string, string | null>> {
  const values = new Map<string, string | null>();
  for (const [table, columns] of Object.entries(ENCRYPTED_COLUMNS)) {
    for (const column of columns) {
      const rows = await db.any(sql.unsafe`
        SELECT id::text AS id, ${sql.identifier([column])} AS value FROM ${sql.identifier([table])}`);
      for (const row of rows) values.set(`${table}.${column}.${row.id as string}`, row.value as string | null);
    }
  }
  return values;
}

/** A connection whose token columns hold `tokens` (plaintexts), encrypted by `crypto` and bound to the row. */
async function insertConnection(
  crypto: IntegrationCrypto,
  tokens: { access?: string; refresh?: string; previous?: string },
): Promise<string> {
  const id = randomUUID();
  const enc = (column: string, plaintext: string | undefined) =>
    plaintext === undefined ? null : crypto.encrypt(plaintext, { table: 'integration_connections', column, rowId: id });
  await db.query(sql.unsafe`
    INSERT INTO integration_connections
      (id, user_id, provider, status, workflow_id, access_token_enc, refresh_token_enc, previous_refresh_token_enc)
    VALUES (${id}, ${userId}, 'google-calendar', 'disconnected', ${`connection:google-calendar:${id}`},
            ${enc('access_token_enc', tokens.access)}, ${enc('refresh_token_enc', tokens.refresh)},
            ${enc('previous_refresh_token_enc', tokens.previous)})`);
  return id;
}

async function insertAuthorization(crypto: IntegrationCrypto, values: { verifier: string; code: string }): Promise<string> {
  const id = randomUUID();
  const bind = (column: string) => ({ table: 'integration_authorizations', column, rowId: id });
  await db.query(sql.unsafe`
    INSERT INTO integration_authorizations (id, user_id, provider, state_hash, code_verifier_enc, code_enc, redirect_uri, expires_at)
    VALUES (${id}, ${userId}, 'google-calendar', ${`state-hash-${id}`},
            ${crypto.encrypt(values.verifier, bind('code_verifier_enc'))}, ${crypto.encrypt(values.code, bind('code_enc'))},
            'http://127.0.0.1/callback', now() + interval '10 minutes')`);
  return id;
}

async function insertSubscription(crypto: IntegrationCrypto, connectionId: string, verification: string): Promise<string> {
  const id = randomUUID();
  await db.query(sql.unsafe`
    INSERT INTO webhook_subscriptions (id, connection_id, provider, kind, external_id, resource, verification_enc)
    VALUES (${id}, ${connectionId}, 'google-calendar', 'calendar-events', ${`channel-${id}`}, 'primary',
            ${crypto.encrypt(verification, { table: 'webhook_subscriptions', column: 'verification_enc', rowId: id })})`);
  return id;
}

/** Replaces the stored value with one whose ciphertext has one bit flipped. */
async function tamper(table: Table, column: string, id: string): Promise<string> {
  const original = await readValue(table, column, id);
  if (!original) throw new Error('nothing to tamper with');
  const parts = original.split('.');
  const ciphertext = Buffer.from(parts[3] ?? '', 'base64url');
  ciphertext[0] = (ciphertext[0] ?? 0) ^ 0x01;
  parts[3] = ciphertext.toString('base64url');
  const tampered = parts.join('.');
  await db.query(sql.unsafe`
    UPDATE ${sql.identifier([table])} SET ${sql.identifier([column])} = ${tampered} WHERE id = ${id}`);
  return tampered;
}

beforeAll(async () => {
  database = await createTestDatabase(inject('databaseUrl'));
  await migrate(database.url);
  db = await createDatabasePool(database.url, { maximumPoolSize: 4 });
  userId = (await insertUser(db, { email: 'reencrypt@example.com', displayName: 'Re Encrypt', passwordHash: 'not-a-real-hash' })).id;
});

afterAll(async () => {
  await db?.end();
  await database?.drop();
});

beforeEach(async () => {
  await db.query(sql.unsafe`DELETE FROM webhook_subscriptions`);
  await db.query(sql.unsafe`DELETE FROM integration_authorizations`);
  await db.query(sql.unsafe`DELETE FROM integration_connections`);
});

describe('reencryptAll', () => {
  it('moves every value onto the active key, keeping its plaintext, and a second run does nothing', async () => {
    const connectionIds: string[] = [];
    for (let i = 0; i < 5; i += 1) {
      // Some rows have empty columns: nulls are skipped, not counted.
      connectionIds.push(
        await insertConnection(underA, { access: `access-${i}`, refresh: `refresh-${i}`, previous: i % 2 === 0 ? `previous-${i}` : undefined }),
      );
    }
    const authorizationId = await insertAuthorization(underA, { verifier: 'verifier-0', code: 'code-0' });
    const subscriptionId = await insertSubscription(underA, connectionIds[0] ?? '', 'channel-token-0');
    const expectedCount = 5 * 2 + 3 + 2 + 1;

    const before = await readAll();
    const progress: ReencryptProgress[] = [];
    // A batch size smaller than the tables exercises the keyset pagination.
    const result = await reencryptAll(db, rotated, { batchSize: 2, onProgress: (update) => progress.push(update) });
    expect(result).toEqual({ reencrypted: expectedCount, failed: [] });

    const after = await readAll();
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    let nonNull = 0;
    for (const [key, value] of after) {
      const [table, column, rowId] = key.split('.') as [string, string, string];
      const previous = before.get(key) ?? null;
      if (previous === null) {
        expect(value, key).toBeNull();
        continue;
      }
      nonNull += 1;
      expect(value, key).not.toBeNull();
      expect(keyIdOf(value ?? ''), key).toBe('key-b');
      expect(value).not.toBe(previous);
      const binding = { table, column, rowId };
      expect(rotated.decrypt(value ?? '', binding)).toBe(underA.decrypt(previous, binding));
      // Only the active key is needed from now on.
      expect(IntegrationCrypto.fromKeyTexts(KEY_B).decrypt(value ?? '', binding)).toBe(underA.decrypt(previous, binding));
    }
    expect(nonNull).toBe(expectedCount);
    expect(rotated.decrypt((await readValue('integration_authorizations', 'code_verifier_enc', authorizationId)) ?? '', {
      table: 'integration_authorizations',
      column: 'code_verifier_enc',
      rowId: authorizationId,
    })).toBe('verifier-0');
    expect(rotated.decrypt((await readValue('webhook_subscriptions', 'verification_enc', subscriptionId)) ?? '', {
      table: 'webhook_subscriptions',
      column: 'verification_enc',
      rowId: subscriptionId,
    })).toBe('channel-token-0');

    // Progress reports every column, with running totals that end at the column's count.
    const finals = new Map(progress.map((update) => [`${update.table}.${update.column}`, update]));
    expect([...finals.keys()].sort()).toEqual(
      Object.entries(ENCRYPTED_COLUMNS).flatMap(([table, columns]) => columns.map((column) => `${table}.${column}`)).sort(),
    );
    expect(finals.get('integration_connections.access_token_enc')).toMatchObject({ reencrypted: 5, alreadyCurrent: 0 });
    expect(finals.get('integration_connections.previous_refresh_token_enc')).toMatchObject({ reencrypted: 3, alreadyCurrent: 0 });
    expect(finals.get('webhook_subscriptions.verification_enc')).toMatchObject({ reencrypted: 1, alreadyCurrent: 0 });
    expect(progress.filter((update) => update.table === 'integration_connections' && update.column === 'access_token_enc').length)
      .toBeGreaterThan(1);

    // A rerun finds everything current and writes nothing.
    const secondProgress: ReencryptProgress[] = [];
    const second = await reencryptAll(db, rotated, { batchSize: 2, onProgress: (update) => secondProgress.push(update) });
    expect(second).toEqual({ reencrypted: 0, failed: [] });
    expect(await readAll()).toEqual(after);
    const secondFinals = new Map(secondProgress.map((update) => [`${update.table}.${update.column}`, update]));
    expect(secondFinals.get('integration_connections.access_token_enc')).toMatchObject({ reencrypted: 0, alreadyCurrent: 5 });
  });

  it('reports undecryptable values, leaves them untouched, and still re-encrypts the rest', async () => {
    const good = await insertConnection(underA, { access: 'good-access', refresh: 'good-refresh' });
    const tamperedRow = await insertConnection(underA, { access: 'tampered-row-access', refresh: 'will-be-tampered' });
    const unknownKeyRow = await insertConnection(underC, { access: 'under-unknown-key' });
    const current = await insertConnection(rotated, { access: 'already-b', refresh: 'already-b-refresh', previous: 'already-b-prev' });
    // A value copied from another row fails its binding, like a tampered one.
    const copiedFrom = await readValue('integration_connections', 'refresh_token_enc', good);
    const copiedRow = await insertConnection(underA, {});
    await db.query(sql.unsafe`UPDATE integration_connections SET refresh_token_enc = ${copiedFrom} WHERE id = ${copiedRow}`);
    const tampered = await tamper('integration_connections', 'refresh_token_enc', tamperedRow);
    const authorizationId = await insertAuthorization(underA, { verifier: 'v', code: 'c' });
    const tamperedCode = await tamper('integration_authorizations', 'code_enc', authorizationId);

    const before = await readAll();
    const result = await reencryptAll(db, rotated);

    expect(result.reencrypted).toBe(2 + 1 + 1); // good (2), tamperedRow's access token, the verifier
    const failures = [...result.failed].sort((x, y) => `${x.table}${x.column}${x.id}`.localeCompare(`${y.table}${y.column}${y.id}`));
    expect(failures).toEqual(
      [
        { table: 'integration_connections', column: 'refresh_token_enc', id: tamperedRow, reason: expect.stringContaining('altered') },
        { table: 'integration_connections', column: 'access_token_enc', id: unknownKeyRow, reason: expect.stringContaining('unknown key "key-c"') },
        { table: 'integration_connections', column: 'refresh_token_enc', id: copiedRow, reason: expect.stringContaining('another row') },
        { table: 'integration_authorizations', column: 'code_enc', id: authorizationId, reason: expect.any(String) },
      ].sort((x, y) => `${x.table}${x.column}${x.id}`.localeCompare(`${y.table}${y.column}${y.id}`)),
    );
    // No failure reason carries a plaintext or a ciphertext.
    for (const failure of result.failed) {
      expect(failure.reason).not.toContain('will-be-tampered');
      expect(failure.reason).not.toContain(tampered);
    }

    // Failed values are byte-identical to what was there.
    expect(await readValue('integration_connections', 'refresh_token_enc', tamperedRow)).toBe(tampered);
    expect(await readValue('integration_connections', 'refresh_token_enc', copiedRow)).toBe(copiedFrom);
    expect(await readValue('integration_authorizations', 'code_enc', authorizationId)).toBe(tamperedCode);
    const unknown = await readValue('integration_connections', 'access_token_enc', unknownKeyRow);
    expect(unknown).toBe(before.get(`integration_connections.access_token_enc.${unknownKeyRow}`));
    expect(keyIdOf(unknown ?? '')).toBe('key-c');

    // Values already under B are byte-identical.
    for (const column of ENCRYPTED_COLUMNS.integration_connections) {
      const key = `integration_connections.${column}.${current}`;
      expect(await readValue('integration_connections', column, current), key).toBe(before.get(key));
    }

    // The other values moved to B, the tampered row's healthy column included.
    for (const [id, column, plaintext] of [
      [good, 'access_token_enc', 'good-access'],
      [good, 'refresh_token_enc', 'good-refresh'],
      [tamperedRow, 'access_token_enc', 'tampered-row-access'],
    ] as const) {
      const value = (await readValue('integration_connections', column, id)) ?? '';
      expect(keyIdOf(value)).toBe('key-b');
      expect(rotated.decrypt(value, { table: 'integration_connections', column, rowId: id })).toBe(plaintext);
    }
    const verifier = (await readValue('integration_authorizations', 'code_verifier_enc', authorizationId)) ?? '';
    expect(keyIdOf(verifier)).toBe('key-b');

    // A rerun reports the same failures and re-encrypts nothing more.
    const second = await reencryptAll(db, rotated);
    expect(second.reencrypted).toBe(0);
    expect(second.failed).toHaveLength(4);
  });

  it('never overwrites a value that a concurrent writer changed (compare-and-set)', async () => {
    const id = await insertConnection(underA, { access: 'old-access', refresh: 'old-refresh' });
    const binding = (column: string) => ({ table: 'integration_connections', column, rowId: id });
    const written = rotated.encrypt('refreshed-access', binding('access_token_enc'));

    // The writer (a token refresh) uses its own plain connection, outside slonik's transaction context.
    const writer = new pg.Client({ connectionString: database.url });
    await writer.connect();
    let run: ReturnType<typeof reencryptAll>;
    try {
      // It holds the row while the re-encryption reads the old value and tries to replace it.
      await writer.query('BEGIN');
      await writer.query('UPDATE integration_connections SET access_token_enc = $1 WHERE id = $2', [written, id]);
      run = reencryptAll(db, rotated);
      // Keep the rejection handled until it is awaited below.
      run.catch(() => {});
      // Wait until the re-encryption's compare-and-set UPDATE is blocked behind the writer's row lock.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const blocked = await writer.query<{ count: number }>(
          `SELECT count(*)::int AS count FROM pg_stat_activity
           WHERE datname = current_database() AND pg_backend_pid() = ANY (pg_blocking_pids(pid))`,
        );
        if ((blocked.rows[0]?.count ?? 0) > 0) break;
        if (Date.now() > deadline) throw new Error('re-encryption never blocked on the writer');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await writer.query('COMMIT');
    } finally {
      await writer.end();
    }
    const result = await run;

    // The writer's value stands; the lost race is not counted and not a failure.
    expect(await readValue('integration_connections', 'access_token_enc', id)).toBe(written);
    expect(result.failed).toEqual([]);
    expect(result.reencrypted).toBe(1); // only the refresh token
    const refresh = (await readValue('integration_connections', 'refresh_token_enc', id)) ?? '';
    expect(keyIdOf(refresh)).toBe('key-b');
    expect(rotated.decrypt(refresh, binding('refresh_token_enc'))).toBe('old-refresh');
  });
});
