import type { FastifyInstance } from 'fastify';
import { sendHtml } from '../../../platform/html';
import { errorResponseSchema } from '../../errors';
import { htmlErrorHandler, SESSION_END_NOTICES, signedInPage, signedOutPage } from '../pages';
import { lookUpPortalSession } from './portal-sessions';
import { portalUserSchema } from './redeem';
import { signOutCsrf } from './sign-out';

/**
 * GET /: who is signed in, their portal roles, how they signed in, and Sign out; or, signed out, the
 * two ways in. GET /api/v1/portal/me: the same as JSON. Both run session sync (a), so a logout,
 * disablement or role change on the PM side shows on the very next request.
 */
export default async function pages(app: FastifyInstance) {
  const csrf = signOutCsrf(app.portal.config);

  app.get('/', { schema: { response: { 200: { type: 'string' } } }, errorHandler: htmlErrorHandler }, async (request, reply) => {
    const lookup = await lookUpPortalSession(app.portal, request, reply, { bearer: false });
    if (lookup.principal) return sendHtml(reply, 200, signedInPage(lookup.principal, csrf.issue(request, reply)), { formAction: ["'self'"] });
    const notice = 'endedBecause' in lookup && lookup.endedBecause ? SESSION_END_NOTICES[lookup.endedBecause] : undefined;
    return sendHtml(reply, 200, signedOutPage(notice));
  });

  app.get(
    '/api/v1/portal/me',
    {
      preHandler: app.authenticatePortal,
      schema: {
        response: {
          200: {
            type: 'object',
            required: ['user', 'roles', 'session'],
            properties: {
              user: portalUserSchema,
              roles: { type: 'array', items: { type: 'string' } },
              session: {
                type: 'object',
                required: ['method', 'expiresAt'],
                properties: { method: { type: 'string', enum: ['sso_token', 'oidc', 'password'] }, expiresAt: { type: 'string' } },
              },
            },
          },
          401: errorResponseSchema,
        },
      },
    },
    async (request, reply) => {
      const { user, roles, session } = request.portalUser!;
      return reply.header('cache-control', 'no-store').send({ user, roles, session: { method: session.method, expiresAt: session.expiresAt.toISOString() } });
    },
  );
}
