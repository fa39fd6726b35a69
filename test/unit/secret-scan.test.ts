import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { inject } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { scanDatabase, scanLog, SecretIndex } from '../helpers/secret-scan';

/** The scanner itself finds what it must: a plaintext secret in any text-like column or log line, also percent-encoded. */
describe('secret scan', () => {
  const secret = 'Atza|IwEBIA-secret-token-value-0123456789';
  let database: TestDatabase;

  beforeAll(async () => {
    database = await createTestDatabase(inject('databaseUrl'));
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    await client.query('CREATE TABLE sample (id int, note text, details jsonb, raw bytea, tags text[], encrypted text)');
    await client.query('INSERT INTO sample VALUES (1, $1, $2, $3, $4, $5)', [
      `callback?code=${encodeURIComponent(secret)}`,
      JSON.stringify({ nested: { token: secret } }),
      Buffer.from(`bytes ${secret} bytes`),
      ['a', secret],
      'v1:key:ciphertext-without-the-secret',
    ]);
    await client.end();
  });

  afterAll(async () => {
    await database?.drop();
  });

  it('finds it in text (percent-encoded), jsonb, bytea and array columns, and not in others', async () => {
    const { hits } = await scanDatabase(database.url, new SecretIndex([secret]));
    expect(hits.map((hit) => hit.where).sort()).toEqual(['sample.details (row 1)', 'sample.note (row 1)', 'sample.raw (row 1)', 'sample.tags (row 1)']);
    expect(hits.every((hit) => !hit.secretPrefix.includes(secret))).toBe(true);
  });

  it('finds it in a log line, and ignores strings too short to tell from chance', () => {
    const index = new SecretIndex([secret, 'short']);
    expect(scanLog(`first line short\n{"msg":"x","value":"${secret}"}`, index)).toEqual([{ where: 'log line 2', secretPrefix: 'Atza|IwE…' }]);
  });
});
