import type { FastifyInstance } from 'fastify';
import { sql } from 'slonik';

const healthSchema = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string' }, checks: { type: 'object', additionalProperties: { type: 'string' } } },
} as const;

/** Liveness says the process answers; readiness says it can do work (database and Temporal reachable). */
export default async function health(app: FastifyInstance) {
  const { db, temporal } = app.services;

  app.get('/healthz', { schema: { response: { 200: healthSchema } } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { response: { 200: healthSchema, 503: healthSchema } } }, async (request, reply) => {
    const [database, temporalServer] = await Promise.all([
      db.oneFirst(sql.unsafe`SELECT 1`).then(() => 'ok', (error: Error) => `unreachable: ${error.message}`),
      temporal.connection.workflowService.getSystemInfo({}).then(() => 'ok', (error: Error) => `unreachable: ${error.message}`),
    ]);
    const ready = database === 'ok' && temporalServer === 'ok';
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks: { database, temporal: temporalServer } });
  });
}
