import type { FastifyInstance } from 'fastify';
import { checkReadiness, type ReadinessChecks } from '../../platform/readiness';

const healthSchema = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string' }, checks: { type: 'object', additionalProperties: { type: 'string' } } },
} as const;

/**
 * Liveness says the process answers; readiness says it can do work (every check passes; for the
 * api-server and the reality-server: database and Temporal reachable). 503 names what is down.
 */
export default async function health(app: FastifyInstance, options: { checks: ReadinessChecks }) {
  app.get('/healthz', { schema: { summary: 'Liveness', response: { 200: healthSchema } } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { summary: 'Readiness: database and Temporal reachable', response: { 200: healthSchema, 503: healthSchema } } }, async (_request, reply) => {
    const readiness = await checkReadiness(options.checks);
    return reply.code(readiness.status === 'ready' ? 200 : 503).send(readiness);
  });
}
