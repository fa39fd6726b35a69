import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import fp from 'fastify-plugin';
import { LogController, type FastifyServerOptions } from 'fastify';

// A caller's id is only taken when it cannot forge log structure or smuggle a secret-sized value.
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** Fastify options that give every request (and so every log line it writes) an id: the caller's `x-request-id` when safe, else a UUID. */
export const requestIdOptions = {
  requestIdHeader: false,
  logController: new LogController({ requestIdLogLabel: 'requestId' }),
  genReqId(request: IncomingMessage): string {
    const incoming = request.headers['x-request-id'];
    return typeof incoming === 'string' && SAFE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
  },
} satisfies Partial<FastifyServerOptions>;

/** Answers every request with its id, so a caller can quote it and an operator can find its log lines. */
export const echoRequestId = fp(async function echoRequestId(app) {
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
});
