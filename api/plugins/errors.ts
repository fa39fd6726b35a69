import fp from 'fastify-plugin';
import type { FastifyError, FastifyReply } from 'fastify';
import { isTransientDatabaseFault } from '../../db/transient-faults';
import { isTransientTemporalFault } from '../../platform/temporal';
import { HttpError } from '../errors';

/** How long a client is asked to wait (Retry-After) when a transient fault kept us from answering. */
export const TRANSIENT_FAULT_RETRY_AFTER_SECONDS = 5;

/**
 * A fault of ours that passes (the database or Temporal unreachable, restarting or too slow): the answer
 * is 503 with Retry-After, never a refusal the client would take as final, and the request changed
 * nothing (its transaction rolled back).
 */
export function isTransientFault(error: unknown): boolean {
  return isTransientDatabaseFault(error) || isTransientTemporalFault(error);
}

export function askToRetryLater(reply: FastifyReply): FastifyReply {
  return reply.code(503).header('retry-after', String(TRANSIENT_FAULT_RETRY_AFTER_SECONDS));
}

/**
 * Every failure leaves as `{ error, message }`: HttpErrors as thrown, schema violations as 400
 * invalid_request, transient faults as 503 temporarily_unavailable, and anything unexpected as a 500
 * whose details stay in the log.
 */
export default fp(async function errorHandling(app) {
  app.setErrorHandler((error: FastifyError | HttpError, request, reply) => {
    if (error instanceof HttpError) {
      return reply.code(error.statusCode).send({ error: error.code, message: error.message });
    }
    if (error.validation) {
      return reply.code(400).send({ error: 'invalid_request', message: error.message });
    }
    if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.code(error.statusCode).send({ error: error.code ?? 'bad_request', message: error.message });
    }
    if (isTransientFault(error)) {
      request.log.warn({ err: error }, 'request failed on a transient fault');
      return askToRetryLater(reply).send({ error: 'temporarily_unavailable', message: 'The service is briefly unavailable; try again shortly' });
    }
    request.log.error({ err: error }, 'request failed');
    return reply.code(500).send({ error: 'internal_error', message: 'An unexpected error occurred' });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ error: 'not_found', message: `No route for ${request.method} ${request.url.split('?')[0]}` }));
});
