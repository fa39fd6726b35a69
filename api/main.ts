import { loadConfig } from '../platform/config';
import { createPayloadCodec } from '../platform/payload-codec';
import { createPlatformServices } from '../platform/services';
import { connectTemporalClient } from '../platform/temporal';
import { runUntilSignalled } from '../platform/process';
import { ensureRealityPortalClient } from '../platform/sso/portal-client';
import { buildApiServer } from './app';

/** Production entry of the api-server: configured only by environment variables. */
await runUntilSignalled('api-server', async () => {
  const config = loadConfig();
  const payloadCodec = createPayloadCodec(config.payloadEncryption);
  const services = await createPlatformServices(config, { process: 'api-server' });
  const temporal = await connectTemporalClient(config.temporal, payloadCodec);
  const app = await buildApiServer({ ...services, config, temporal });
  // The schema is migrated before the api-server starts (npm run migrate), so the portal's client can be written now.
  const portalClient = await ensureRealityPortalClient(services.db, services.audit, config);
  app.log.info({ clientId: config.sso.portal.clientId, outcome: portalClient }, 'Reality Portal OpenID Connect client');
  await app.listen({ host: config.http.host, port: config.http.port });
  return async () => {
    // Fastify's close drains in-flight requests before the pools go away.
    await app.close();
    await temporal.connection.close();
    await services.db.end();
  };
});
