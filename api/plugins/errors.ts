import fp from 'fastify-plugin';
import type { FastifyError } from 'fastify';
import { HttpError } from '../errors';

/**
 * Every failure leaves as `{ error, message }`: HttpErrors as thrown, schema violations as 400
 * invalid_request, and anything unexpected as a 500 whose details stay in the log.
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
    request.log.error({ err: error }, 'request failed');
    return reply.code(500).send({ error: 'internal_error', message: 'An unexpected error occurred' });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ error: 'not_found', message: `No route for ${request.method} ${request.url.split('?')[0]}` }));
});
