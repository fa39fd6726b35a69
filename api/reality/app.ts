import Fastify, { type FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import rateLimit from '@fastify/rate-limit';
import type { DestinationStream } from 'pino';
import { fastifyLoggerOptions } from '../../platform/logger';
import { platformReadinessChecks } from '../../platform/readiness';
import errorHandling from '../plugins/errors';
import health from '../plugins/health';
import { echoRequestId, requestIdOptions } from '../request-id';
import backchannelLogout from './plugins/backchannel-logout';
import oidcLogin from './plugins/oidc-login';
import pages from './plugins/pages';
import portalLogin from './plugins/portal-login';
import portalSessions from './plugins/portal-sessions';
import redeem from './plugins/redeem';
import signOut from './plugins/sign-out';
import { realityServicesFromConfig, type RealityServices } from './services';
import { SsoSessionWorkflows } from './sso-session-workflow';

export type { RealityServices } from './services';

/**
 * The Reality Portal's server: its own users and sessions, single sign-on from the PM app (the one-time
 * SSO token and OpenID Connect), session sync with the PM session on every request, and the receiver
 * of the api-server's back-channel logouts.
 */
export async function buildRealityServer(services: RealityServices, options: { logDestination?: DestinationStream } = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: fastifyLoggerOptions(services.config, options.logDestination),
    trustProxy: services.config.http.trustProxy,
    ...requestIdOptions,
  });
  const resolved = realityServicesFromConfig(services);
  const workflows = new SsoSessionWorkflows(resolved);
  app.decorate('portal', { ...resolved, workflows });
  app.addHook('onClose', () => workflows.close());
  await app.register(errorHandling);
  await app.register(echoRequestId);
  await app.register(formbody);
  // Off by default: the password login opts in.
  await app.register(rateLimit, { global: false });
  await app.register(health, { checks: platformReadinessChecks(services.db, services.temporal.connection) });
  await app.register(portalSessions);
  for (const plugin of [pages, redeem, oidcLogin, signOut, backchannelLogout, portalLogin]) {
    await app.register(plugin);
  }
  return app;
}
