import { createDatabasePool } from '../../db/pool';
import { ConfigError, loadConfig, REALITY_SERVER_NEEDS } from '../../platform/config';
import { createPayloadCodec } from '../../platform/payload-codec';
import { runUntilSignalled } from '../../platform/process';
import { connectTemporalClient } from '../../platform/temporal';
import { buildRealityServer } from './app';
import { realityServicesFromConfig } from './services';

/** Production entry of the reality-server: configured only by environment variables. */
await runUntilSignalled('reality-server', async () => {
  const config = loadConfig(process.env, REALITY_SERVER_NEEDS);
  if (!config.databaseUrl) throw new ConfigError(['DATABASE_URL: is required']);
  const payloadCodec = createPayloadCodec(config.payloadEncryption);
  // A browser waits for every answer: a slow database or a held lock answers 503 in time, like the api-server's.
  const db = await createDatabasePool(config.databaseUrl, {
    connectionTimeoutMs: config.databaseConnectionTimeoutMs,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
    lockTimeoutMs: config.databaseLockTimeoutMs,
  });
  const temporal = await connectTemporalClient(config.temporal, payloadCodec);
  const app = await buildRealityServer(realityServicesFromConfig({ config, db, temporal }));
  await app.listen({ host: config.realityServer.host, port: config.realityServer.port });
  return async () => {
    // Fastify's close drains in-flight requests (and the SSO session workflow calls) before the pools go away.
    await app.close();
    await temporal.connection.close();
    await db.end();
  };
});
