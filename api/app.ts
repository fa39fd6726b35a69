import Fastify, { type FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import { fastifyLoggerOptions } from '../platform/logger';
import { PROVIDER_IDS } from '../platform/providers/provider';
import connectionRoutes from './plugins/connections';
import errorHandling from './plugins/errors';
import health from './plugins/health';
import sessions from './plugins/sessions';
import type { ApiServices } from './services';

/** The api-server: a thin HTTP layer that validates, authenticates, writes what must be written, and talks to workflows. */
export async function buildApiServer(services: ApiServices): Promise<FastifyInstance> {
  const app = Fastify({ logger: fastifyLoggerOptions(services.config), trustProxy: services.config.http.trustProxy });
  app.decorate('services', services);
  await app.register(errorHandling);
  await app.register(formbody);
  await app.register(sessions);
  await app.register(health);
  for (const provider of PROVIDER_IDS) {
    await app.register(connectionRoutes, { prefix: `/api/v1/integrations/${provider}`, provider });
  }
  return app;
}
