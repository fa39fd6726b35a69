import { migrate } from '../db/migrate';
import { ConfigError, loadConfig } from '../platform/config';

/** `npm run migrate`: applies the migrations this database has not seen. */
try {
  const { databaseUrl } = loadConfig(process.env, ['DATABASE_URL']);
  if (!databaseUrl) throw new ConfigError(['DATABASE_URL: is required to run migrations']);
  const applied = await migrate(databaseUrl, (line) => console.log(line));
  console.log(applied.length === 0 ? 'database is up to date' : `applied ${applied.length} migration(s)`);
} catch (error) {
  console.error(error instanceof ConfigError ? `migrate: ${error.message}` : error);
  process.exit(error instanceof ConfigError ? 2 : 1);
}
