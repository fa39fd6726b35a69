import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HttpError } from '../../errors';
import { checkConfiguredBearer } from './static-bearer';

/**
 * Puts every route of the (encapsulated) plugin `app` behind `Authorization: Bearer <ADMIN_API_TOKEN>`,
 * checked before the body is parsed or validated, so an unauthenticated caller learns nothing about the
 * API. Without ADMIN_API_TOKEN every route answers 503 admin_disabled. Answers are never cached.
 */
export function requireAdminToken(app: FastifyInstance): void {
  const configured = app.services.config.authorizationServer.adminApiToken;

  async function requireAdmin(request: FastifyRequest, reply: FastifyReply) {
    if (configured === undefined) throw new HttpError(503, 'admin_disabled', 'The admin API is disabled: ADMIN_API_TOKEN is not set');
    const check = checkConfiguredBearer(request, configured);
    if (check === 'missing') {
      reply.header('www-authenticate', 'Bearer realm="admin"');
      throw new HttpError(401, 'unauthenticated', 'An admin bearer token is required');
    }
    if (check === 'wrong') {
      reply.header('www-authenticate', 'Bearer realm="admin", error="invalid_token"');
      throw new HttpError(401, 'invalid_token', 'The admin bearer token is wrong');
    }
  }

  app.addHook('onRequest', requireAdmin);
  app.addHook('onSend', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
  });
}
