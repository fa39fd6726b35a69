import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../db/embedded';
import { ensureTemporalCli, ensureTemporalTestServer, repoRoot } from '../scripts/temporal-binaries';

/**
 * Runs once per `vitest run`, before any test file:
 * - finds or installs the Temporal binaries (see scripts/temporal-binaries.ts);
 * - provides a PostgreSQL URL: DATABASE_URL when set, else an embedded cluster under .data/test-postgres.
 *
 * Test files read the values with `inject('databaseUrl')` etc. and create their own database
 * with test/helpers/database.ts, so files running in parallel never share state.
 */

declare module 'vitest' {
  export interface ProvidedContext {
    /** Server URL of a PostgreSQL cluster; create a per-file database from it with createTestDatabase(). */
    databaseUrl: string;
    /** `temporal` CLI (for TestWorkflowEnvironment.createLocal), or undefined to let the SDK download it. */
    temporalCliPath: string | undefined;
    /** `temporal-test-server` (for TestWorkflowEnvironment.createTimeSkipping), or undefined likewise. */
    temporalTestServerPath: string | undefined;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const embeddedPostgres = process.env.DATABASE_URL
    ? undefined
    : startEmbeddedPostgres({ dataDir: path.join(repoRoot, '.data', 'test-postgres') });

  const [cli, testServer, database] = await Promise.allSettled([
    ensureTemporalCli(),
    ensureTemporalTestServer(),
    embeddedPostgres,
  ]);
  const stopDatabase = async () => {
    if (database.status === 'fulfilled' && database.value) await database.value.stop();
  };
  for (const result of [cli, testServer, database]) {
    if (result.status === 'rejected') {
      await stopDatabase();
      throw result.reason;
    }
  }

  const databaseUrl = process.env.DATABASE_URL ?? (database.status === 'fulfilled' ? database.value?.url : undefined);
  if (!databaseUrl) throw new Error('no database URL');
  project.provide('databaseUrl', databaseUrl);
  project.provide('temporalCliPath', cli.status === 'fulfilled' ? cli.value : undefined);
  project.provide('temporalTestServerPath', testServer.status === 'fulfilled' ? testServer.value : undefined);

  return stopDatabase;
}
