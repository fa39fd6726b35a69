import { DoubleSubmitCsrf } from '../../csrf';
import { isClientError } from '../../errors';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sendHtml } from '../../../platform/html';
import { attemptLogin, PM_USER_ACCOUNTS } from '../../../platform/login';
import { LOGIN_FAILED_MESSAGE, LOGIN_FORM_EXPIRED_MESSAGE, LOGIN_RATE_LIMITED_MESSAGE, renderLoginPage } from '../../../platform/login-page';
import { LOGIN_RATE_LIMIT, loginSettings, revokePresentedSession, startSession } from '../sessions';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';

export const DEFAULT_RETURN_TO = '/oauth/grants';

/**
 * Only a same-origin relative path is a return URL: "/x?y" yes; "//evil", "/\\evil", "https://evil",
 * "javascript:" or anything with control characters or backslashes no (open redirect, RFC 9700 4.11).
 */
export function safeReturnTo(value: unknown, base: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 4096) return DEFAULT_RETURN_TO;
  if (!value.startsWith('/') || value.startsWith('//') || value.includes('\\')) return DEFAULT_RETURN_TO;
  // Control characters and spaces (browsers strip tabs and newlines, so "/\t/evil" would become "//evil").
  if ([...value].some((character) => character.charCodeAt(0) <= 0x20 || character.charCodeAt(0) === 0x7f)) return DEFAULT_RETURN_TO;
  const origin = new URL(base).origin;
  if (!URL.canParse(value, origin)) return DEFAULT_RETURN_TO;
  const resolved = new URL(value, origin);
  if (resolved.origin !== origin) return DEFAULT_RETURN_TO;
  // Dot segments can normalise "/.//evil" into "//evil", a scheme-relative URL: check the result, not just the input.
  const path = `${resolved.pathname}${resolved.search}`;
  return path.startsWith('/') && !path.startsWith('//') && !path.includes('\\') ? path : DEFAULT_RETURN_TO;
}

function loginPage(options: { returnTo: string; csrfToken: string; email?: string; error?: string }): string {
  return renderLoginPage({
    title: 'Sign in',
    action: '/login',
    hiddenFields: { csrf_token: options.csrfToken, return_to: options.returnTo },
    email: options.email,
    error: options.error,
  });
}

// No NUL in any field: PostgreSQL refuses it in text, which would otherwise surface as a 500.
const loginBodySchema = {
  type: 'object',
  properties: {
    email: safeString(320),
    password: safeString(1024),
    csrf_token: safeString(128),
    return_to: safeString(4096),
  },
} as const;

const loginQuerySchema = { type: 'object', properties: { return_to: safeString(4096) } } as const;

/**
 * The sign-in page of the authorization server (email + password, no JavaScript).
 *
 * Login CSRF: a double-submit token (api/csrf.ts) scoped to /login, so another site cannot forge a
 * sign-in (e.g. into the attacker's account).
 */
export default async function login(app: FastifyInstance) {
  const { db, audit, config } = app.services;
  const base = config.authorizationServer.issuer;

  const csrf = new DoubleSubmitCsrf('pm_login_csrf', '/login', config.http.secureCookies);
  const page = (reply: FastifyReply, status: number, options: Parameters<typeof loginPage>[0]) => sendHtml(reply, status, loginPage(options), { formAction: 'unrestricted' });

  const htmlErrorHandler = (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    if (!isClientError(error)) throw error;
    if (error.statusCode === 429) {
      return page(reply, 429, { returnTo: DEFAULT_RETURN_TO, csrfToken: csrf.issue(request, reply), error: LOGIN_RATE_LIMITED_MESSAGE });
    }
    return page(reply, 400, { returnTo: DEFAULT_RETURN_TO, csrfToken: csrf.issue(request, reply), error: 'The form was malformed. Try again.' });
  };

  app.get<{ Querystring: { return_to?: string } }>(
    '/login',
    {
      schema: { querystring: loginQuerySchema, response: { 200: { type: 'string' } } },
      errorHandler: htmlErrorHandler,
    },
    async (request, reply) => {
      const returnTo = safeReturnTo(request.query.return_to, base);
      return page(reply, 200, { returnTo, csrfToken: csrf.issue(request, reply) });
    },
  );

  app.post<{ Body: { email?: string; password?: string; csrf_token?: string; return_to?: string } }>(
    '/login',
    {
      schema: { consumes: ['application/x-www-form-urlencoded'], body: loginBodySchema, response: { '4xx': { type: 'string' } } },
      config: { rateLimit: LOGIN_RATE_LIMIT },
      errorHandler: htmlErrorHandler,
    },
    async (request, reply) => {
      const body = request.body ?? {};
      const returnTo = safeReturnTo(body.return_to, base);
      if (!csrf.matches(request, body.csrf_token)) {
        // Fresh token: the page works when submitted again from this browser.
        return page(reply, 403, { returnTo, csrfToken: csrf.renew(reply), error: LOGIN_FORM_EXPIRED_MESSAGE });
      }
      const email = (body.email ?? '').trim();
      const password = body.password ?? '';
      if (!email || !password) {
        return page(reply, 401, { returnTo, csrfToken: csrf.issue(request, reply), email, error: LOGIN_FAILED_MESSAGE });
      }
      const outcome = await attemptLogin(db, audit, PM_USER_ACCOUNTS, loginSettings(config), { email, password, origin: requestOrigin(request) });
      if (!outcome.ok) {
        return page(reply, 401, { returnTo, csrfToken: csrf.issue(request, reply), email, error: LOGIN_FAILED_MESSAGE });
      }
      // A session the browser already had (possibly planted) does not outlive the sign-in.
      await revokePresentedSession(db, request);
      await startSession(db, config, reply, outcome.account.id);
      csrf.clear(reply);
      return reply.header('cache-control', 'no-store').redirect(returnTo, 303);
    },
  );
}
