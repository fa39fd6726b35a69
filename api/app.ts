import Fastify, { type FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import rateLimit from '@fastify/rate-limit';
import { fastifyLoggerOptions } from '../platform/logger';
import { PROVIDER_IDS } from '../platform/providers/provider';
import connectionRoutes from './plugins/connections';
import { authorizationServerServices } from './plugins/oauth/index';
import adminClients from './plugins/oauth/admin-clients';
import authorize from './plugins/oauth/authorize';
import grants from './plugins/oauth/grants';
import introspection from './plugins/oauth/introspection';
import jwks from './plugins/oauth/jwks';
import login from './plugins/oauth/login';
import metadata from './plugins/oauth/metadata';
import registration from './plugins/oauth/registration';
import revocation from './plugins/oauth/revocation';
import token from './plugins/oauth/token';
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
  // Off by default: the OAuth endpoints that need it (token, introspection, login, registration) opt in per route.
  await app.register(rateLimit, { global: false });
  await app.register(sessions);
  await app.register(health);
  await app.register(authorizationServerServices);
  for (const plugin of [metadata, jwks, authorize, login, token, introspection, revocation, registration, adminClients, grants]) {
    await app.register(plugin);
  }
  for (const provider of PROVIDER_IDS) {
    await app.register(connectionRoutes, { prefix: `/api/v1/integrations/${provider}`, provider });
  }
  return app;
}
