import { isClientError } from '../../errors';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { html, renderPage, sendHtml } from '../../../platform/html';
import { attemptLogin } from '../../../platform/login';
import { randomToken, secretsEqual } from '../../../platform/secrets';
import { LOGIN_RATE_LIMIT, loginSettings, revokePresentedSession, startSession } from '../sessions';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';

export const DEFAULT_RETURN_TO = '/oauth/grants';
export const LOGIN_CSRF_COOKIE = 'pm_login_csrf';
const GENERIC_FAILURE = 'Email or password is wrong, or the account is temporarily locked.';
const CSRF_TOKEN = /^[A-Za-z0-9_-]{43}$/;

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
  return renderPage(
    'Sign in',
    html`<h1>Sign in</h1>
${options.error ? html`<p class="error" role="alert">${options.error}</p>` : ''}
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="${options.csrfToken}">
<input type="hidden" name="return_to" value="${options.returnTo}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required maxlength="320" value="${options.email ?? ''}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
<div class="actions"><button type="submit">Sign in</button></div>
</form>`,
  );
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
 * Login CSRF: a double-submit token. GET /login puts a random token in an HttpOnly, SameSite=Strict
 * cookie scoped to /login and in a hidden field; POST /login needs both, equal. Another site can
 * neither read the cookie nor set it, so it cannot forge a sign-in (e.g. into the attacker's account).
 */
export default async function login(app: FastifyInstance) {
  const { db, audit, config } = app.services;
  const base = config.authorizationServer.issuer;

  const csrfCookie = (reply: FastifyReply, token: string) =>
    reply.setCookie(LOGIN_CSRF_COOKIE, token, { path: '/login', httpOnly: true, sameSite: 'strict', secure: config.http.secureCookies });

  /** Keeps the token of an existing cookie, so two open login tabs both work. */
  const csrfTokenFor = (request: FastifyRequest, reply: FastifyReply): string => {
    const existing = request.cookies[LOGIN_CSRF_COOKIE];
    const token = existing && CSRF_TOKEN.test(existing) ? existing : randomToken();
    csrfCookie(reply, token);
    return token;
  };

  const htmlErrorHandler = (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    if (!isClientError(error)) throw error;
    if (error.statusCode === 429) {
      return sendHtml(reply, 429, loginPage({ returnTo: DEFAULT_RETURN_TO, csrfToken: csrfTokenFor(request, reply), error: 'Too many attempts. Wait a minute and try again.' }), { formAction: 'unrestricted' });
    }
    return sendHtml(reply, 400, loginPage({ returnTo: DEFAULT_RETURN_TO, csrfToken: csrfTokenFor(request, reply), error: 'The form was malformed. Try again.' }), { formAction: 'unrestricted' });
  };

  app.get<{ Querystring: { return_to?: string } }>(
    '/login',
    {
      schema: { querystring: loginQuerySchema, response: { 200: { type: 'string' } } },
      errorHandler: htmlErrorHandler,
    },
    async (request, reply) => {
      const returnTo = safeReturnTo(request.query.return_to, base);
      return sendHtml(reply, 200, loginPage({ returnTo, csrfToken: csrfTokenFor(request, reply) }), { formAction: 'unrestricted' });
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
      const cookieToken = request.cookies[LOGIN_CSRF_COOKIE];
      const formToken = body.csrf_token;
      const csrfOk = Boolean(cookieToken && formToken && secretsEqual(formToken, cookieToken));
      if (!csrfOk) {
        // Fresh token: the page works when submitted again from this browser.
        const token = randomToken();
        csrfCookie(reply, token);
        return sendHtml(reply, 403, loginPage({ returnTo, csrfToken: token, error: 'Your sign-in form expired. Please try again.' }), { formAction: 'unrestricted' });
      }
      const email = (body.email ?? '').trim();
      const password = body.password ?? '';
      if (!email || !password) {
        return sendHtml(reply, 401, loginPage({ returnTo, csrfToken: csrfTokenFor(request, reply), email, error: GENERIC_FAILURE }), { formAction: 'unrestricted' });
      }
      const outcome = await attemptLogin(db, audit, loginSettings(config), { email, password, origin: requestOrigin(request) });
      if (!outcome.ok) {
        return sendHtml(reply, 401, loginPage({ returnTo, csrfToken: csrfTokenFor(request, reply), email, error: GENERIC_FAILURE }), { formAction: 'unrestricted' });
      }
      // A session the browser already had (possibly planted) does not outlive the sign-in.
      await revokePresentedSession(db, request);
      await startSession(db, config, reply, outcome.user.id);
      reply.clearCookie(LOGIN_CSRF_COOKIE, { path: '/login' });
      return reply.header('cache-control', 'no-store').redirect(returnTo, 303);
    },
  );
}
