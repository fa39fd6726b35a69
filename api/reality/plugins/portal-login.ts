import type { FastifyInstance, FastifyReply } from 'fastify';
import { html, sendHtml } from '../../../platform/html';
import { attemptLogin } from '../../../platform/login';
import { LOGIN_FAILED_MESSAGE, LOGIN_FORM_EXPIRED_MESSAGE, LOGIN_RATE_LIMITED_MESSAGE, renderLoginPage } from '../../../platform/login-page';
import { PORTAL_ACCOUNTS } from '../../../platform/portal/login';
import { startPasswordSession } from '../../../platform/portal/sessions';
import { isClientError } from '../../errors';
import { LOGIN_RATE_LIMIT, loginSettings } from '../../plugins/sessions';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { DoubleSubmitCsrf } from '../../csrf';
import { htmlErrorHandler } from '../pages';
import { startBrowserPortalSession } from './portal-sessions';

function loginPage(options: { csrfToken: string; email?: string; error?: string }): string {
  return renderLoginPage({
    title: 'Portal account sign-in',
    action: '/login',
    note: html`<p class="note">For accounts of the Reality Portal only. PM app users: <a href="/sso/login">sign in with the PM app</a>.</p>\n`,
    hiddenFields: { csrf_token: options.csrfToken },
    email: options.email,
    error: options.error,
  });
}

const loginBodySchema = {
  type: 'object',
  properties: { email: safeString(320), password: safeString(1024), csrf_token: safeString(128) },
} as const;

/**
 * GET|POST /login: portal-only accounts (no PM user) sign in with their own email and password.
 * Login CSRF is prevented with a double-submit token (api/csrf.ts); failures count towards the
 * same lockout as PM logins (LOGIN_MAX_FAILURES, LOGIN_LOCKOUT_SECONDS) in the portal's own ledger, and
 * each address is rate limited. A PM user's email and password do not work here: PM users sign in with
 * the PM app, and their portal account is linked to them, never to an email.
 */
export default async function portalLogin(app: FastifyInstance) {
  const { db, audit, config } = app.portal;
  const csrf = new DoubleSubmitCsrf('portal_login_csrf', '/login', config.http.secureCookies);
  const page = (reply: FastifyReply, status: number, options: Parameters<typeof loginPage>[0]) => sendHtml(reply, status, loginPage(options), { formAction: ["'self'"] });

  app.get('/login', { schema: { response: { 200: { type: 'string' } } }, errorHandler: htmlErrorHandler }, async (request, reply) =>
    page(reply, 200, { csrfToken: csrf.issue(request, reply) }),
  );

  app.post<{ Body: { email?: string; password?: string; csrf_token?: string } }>(
    '/login',
    {
      schema: { consumes: ['application/x-www-form-urlencoded'], body: loginBodySchema, response: { '4xx': { type: 'string' }, '5xx': { type: 'string' } } },
      config: { rateLimit: LOGIN_RATE_LIMIT },
      errorHandler: (error, request, reply) => {
        if (isClientError(error) && error.statusCode === 429) {
          return page(reply, 429, { csrfToken: csrf.issue(request, reply), error: LOGIN_RATE_LIMITED_MESSAGE });
        }
        return htmlErrorHandler(error, request, reply);
      },
    },
    async (request, reply) => {
      const body = request.body ?? {};
      if (!csrf.matches(request, body.csrf_token)) {
        return page(reply, 403, { csrfToken: csrf.renew(reply), error: LOGIN_FORM_EXPIRED_MESSAGE });
      }
      const email = (body.email ?? '').trim();
      const password = body.password ?? '';
      if (!email || !password) return page(reply, 401, { csrfToken: csrf.issue(request, reply), email, error: LOGIN_FAILED_MESSAGE });
      const origin = requestOrigin(request);
      const outcome = await attemptLogin(db, audit, PORTAL_ACCOUNTS, loginSettings(config), { email, password, origin });
      if (!outcome.ok) return page(reply, 401, { csrfToken: csrf.issue(request, reply), email, error: LOGIN_FAILED_MESSAGE });
      const session = await startPasswordSession(db, audit, outcome.account, { lifetimeSeconds: config.sso.portalSessionSeconds, origin });
      await startBrowserPortalSession(app.portal, request, reply, session);
      csrf.clear(reply);
      return reply.header('cache-control', 'no-store').redirect('/', 303);
    },
  );
}
