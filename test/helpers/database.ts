import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * A fresh, uniquely named database on the cluster behind `baseUrl` (usually `inject('databaseUrl')`),
 * so every test file works in isolation. Apply migrations to `url` yourself; call drop() in afterAll.
 */
export interface TestDatabase {
  /** Connection URL of the new database (same server and credentials as baseUrl). */
  url: string;
  /** Terminates remaining connections to the database and drops it. Safe to call twice. */
  drop(): Promise<void>;
}

async function withClient<T>(connectionString: string, run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(baseUrl: string): Promise<TestDatabase> {
  const name = `test_${process.pid}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  await withClient(baseUrl, (client) => client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`));

  const url = new URL(baseUrl);
  url.pathname = `/${name}`;

  let dropped: Promise<void> | undefined;
  return {
    url: url.toString(),
    drop() {
      dropped ??= withClient(baseUrl, async (client) => {
        await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
        await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)}`);
      }).catch((error: unknown) => {
        dropped = undefined; // allow a retry
        throw error;
      });
      return dropped;
    },
  };
}
