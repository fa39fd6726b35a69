import type { FastifyInstance } from 'fastify';
import type { Config } from '../../../platform/config';
import { endPresentedPortalSession } from '../../../platform/portal/sessions';
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
 * POST /logout: the portal sign-out. The portal session ends (audited as initiated by the portal), and
 * for an SSO session the SSO session workflow is told, which logs the PM session out by back-channel
 * logout; when it cannot be told, the PM session is ended directly in the shared database.
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
      const ended = token ? await endPresentedPortalSession(db, audit, token, 'logout', requestOrigin(request)) : null;
      if (ended?.pmSessionId) await workflows.portalSessionEnded({ id: ended.id, pmSessionId: ended.pmSessionId }, request.log);
      clearPortalSessionCookie(reply);
      csrf.clear(reply);
      return reply.header('cache-control', 'no-store').redirect('/', 303);
    },
  );
}
