import Fastify, { type FastifyInstance } from 'fastify';
import type { Client } from '@temporalio/client';
import type { DestinationStream } from 'pino';
import type { DatabasePool } from '../../db/pool';
import type { Config } from '../../platform/config';
import { fastifyLoggerOptions } from '../../platform/logger';
import { platformReadinessChecks } from '../../platform/readiness';
import errorHandling from '../plugins/errors';
import health from '../plugins/health';
import { echoRequestId, requestIdOptions } from '../request-id';

/** What the reality-server is built from; tests hand in their own database and Temporal client. */
export interface RealityServices {
  config: Config;
  db: DatabasePool;
  temporal: Client;
}

/** The Reality Portal's server. So far it only reports its health; the SSO issue gives it its routes. */
export async function buildRealityServer(services: RealityServices, options: { logDestination?: DestinationStream } = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: fastifyLoggerOptions(services.config, options.logDestination),
    trustProxy: services.config.http.trustProxy,
    ...requestIdOptions,
  });
  await app.register(errorHandling);
  await app.register(echoRequestId);
  await app.register(health, { checks: platformReadinessChecks(services.db, services.temporal.connection) });
  return app;
}
