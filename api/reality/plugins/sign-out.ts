import type { FastifyInstance } from 'fastify';
import type { Config } from '../../../platform/config';
import { signOutPortalSession } from '../../../platform/portal/sessions';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { DoubleSubmitCsrf } from '../../csrf';
import { htmlErrorHandler, sendProblemPage } from '../pages';
import { clearPortalSessionCookie, PORTAL_SESSION_COOKIE } from './portal-sessions';

/** The sign-out form's CSRF token (issued by the signed-in page, checked here). */
export function signOutCsrf(config: Config): DoubleSubmitCsrf {
  return new DoubleSubmitCsrf('portal_logout_csrf', '/logout', config.http.secureCookies);
}

/**
 * POST /logout: the portal sign-out. The portal session ends, and for an SSO session the PM session it
 * came from ends with it in the shared database, so the PM app refuses its very next request (both
 * audited as initiated by the portal). Then the SSO session workflows are told: the session's own
 * sends the api-server its back-channel logout, those of the PM session's other portal sessions log
 * them out.
 */
export default async function signOut(app: FastifyInstance) {
  const { db, audit, config, workflows } = app.portal;
  const csrf = signOutCsrf(config);

  app.post<{ Body: { csrf_token?: string } }>(
    '/logout',
    {
      schema: {
        consumes: ['application/x-www-form-urlencoded'],
        body: { type: 'object', properties: { csrf_token: safeString(128) } },
        response: { '4xx': { type: 'string' }, '5xx': { type: 'string' } },
      },
      errorHandler: htmlErrorHandler,
    },
    async (request, reply) => {
      if (!csrf.matches(request, request.body?.csrf_token)) {
        return sendProblemPage(reply, 403, 'Sign-out not confirmed', 'Your sign-out form expired. Open the portal page and press Sign out again.');
      }
      const token = request.cookies[PORTAL_SESSION_COOKIE];
      const ended = token ? await signOutPortalSession(db, audit, token, requestOrigin(request)) : null;
      if (ended?.pmSessionId) await workflows.portalSignedOut({ id: ended.id, pmSessionId: ended.pmSessionId, pmSessionEnded: ended.pmSessionEnded }, request.log);
      clearPortalSessionCookie(reply);
      csrf.clear(reply);
      return reply.header('cache-control', 'no-store').redirect('/', 303);
    },
  );
}
