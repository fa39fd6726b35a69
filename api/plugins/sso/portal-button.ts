import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorPage, html, renderPage, sendHtml } from '../../../platform/html';
import { randomToken, secretsEqual } from '../../../platform/secrets';
import { issuePortalSsoToken, portalSsoEnabled } from '../../../platform/sso/sso-token-issuance';
import { isClientError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { cookieSession } from '../sessions';
import { portalSsoTokenIssuer, ssoTokenRateLimit } from './sso-token-requests';

export const PORTAL_BUTTON_PATH = '/sso/reality-portal';
export const PORTAL_BUTTON_CSRF_COOKIE = 'pm_sso_csrf';
const CSRF_TOKEN = /^[A-Za-z0-9_-]{43}$/;
const LOGIN_REDIRECT = `/login?${new URLSearchParams({ return_to: PORTAL_BUTTON_PATH })}`;

function buttonPage(options: { email: string; csrfToken: string; error?: string }): string {
  return renderPage(
    'Open the Reality Portal',
    html`<h1>Reality Portal</h1>
${options.error ? html`<p class="error" role="alert">${options.error}</p>` : ''}
<p>Signed in as <strong>${options.email}</strong>.</p>
<form method="post" action="${PORTAL_BUTTON_PATH}">
<input type="hidden" name="csrf_token" value="${options.csrfToken}">
<div class="actions"><button type="submit">Open Reality Portal</button></div>
</form>
<p class="note">The Reality Portal opens signed in as this user; signing out of either signs out of both.</p>`,
  );
}

/** Where the browser takes the token: the portal's redemption page, which opens the portal session. */
export function portalRedeemUrl(portalPublicUrl: string, token: string): string {
  const url = new URL(`${portalPublicUrl.replace(/\/+$/, '')}/sso/redeem`);
  url.searchParams.set('sso_token', token);
  return url.toString();
}

/**
 * The PM app's "Open Reality Portal" button. GET shows who is signed in (session cookie only: a Bearer
 * header is not a browser sign-in) and a form; POST mints a one-time SSO token and sends the browser to
 * the portal's /sso/redeem with it (303, never cached, no Referer).
 *
 * CSRF, beyond the session cookie's SameSite=Lax (a cross-site POST carries no session): a
 * double-submit token like the login page's (an HttpOnly, SameSite=Strict cookie scoped to this path,
 * equal to a hidden field), and a cross-site Sec-Fetch-Site is refused outright. Otherwise another site
 * could open the portal in the victim's name, which is harmless but not what they asked for.
 */
export default async function portalButton(app: FastifyInstance) {
  const { db, config } = app.services;
  const { portal } = config.sso;
  const issuer = portalSsoTokenIssuer(app);
  // Browsers apply form-action to the redirect after the submission: the portal's origin must be allowed.
  const formAction = ["'self'", new URL(portal.publicUrl).origin];

  const csrfCookie = (reply: FastifyReply, token: string) =>
    reply.setCookie(PORTAL_BUTTON_CSRF_COOKIE, token, { path: PORTAL_BUTTON_PATH, httpOnly: true, sameSite: 'strict', secure: config.http.secureCookies });

  /** Keeps the token of an existing cookie, so two open tabs both work. */
  const csrfTokenFor = (request: FastifyRequest, reply: FastifyReply, fresh = false): string => {
    const existing = request.cookies[PORTAL_BUTTON_CSRF_COOKIE];
    const token = !fresh && existing && CSRF_TOKEN.test(existing) ? existing : randomToken();
    csrfCookie(reply, token);
    return token;
  };

  const page = (request: FastifyRequest, reply: FastifyReply, status: number, options: { error?: string; freshToken?: boolean } = {}) =>
    sendHtml(reply, status, buttonPage({ email: request.user!.email, csrfToken: csrfTokenFor(request, reply, options.freshToken), ...(options.error ? { error: options.error } : {}) }), { formAction });

  const notConfigured = (reply: FastifyReply) =>
    sendHtml(reply, 404, errorPage('Reality Portal', 'Single sign-on into the Reality Portal is not configured on this server.'));

  /** Finds the cookie session (and sets request.user) before the per-user rate limit runs. */
  const findCookieSession = async (request: FastifyRequest) => {
    const live = await cookieSession(db, config, request);
    request.user = live?.user ?? null;
    request.pmSession = live?.session ?? null;
  };

  const htmlErrorHandler = (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    if (!isClientError(error) || !request.user) throw error;
    if (error.statusCode === 429) return page(request, reply, 429, { error: 'Too many attempts. Wait a minute and try again.' });
    return page(request, reply, 400, { error: 'The form was malformed. Try again.' });
  };

  app.get(
    PORTAL_BUTTON_PATH,
    { preHandler: findCookieSession, schema: { summary: 'The "Open Reality Portal" page of the PM app', response: { 200: { type: 'string' } } } },
    async (request, reply) => {
      if (!portalSsoEnabled(config.sso)) return notConfigured(reply);
      if (!request.user) return reply.header('cache-control', 'no-store').redirect(LOGIN_REDIRECT, 303);
      return page(request, reply, 200);
    },
  );

  app.post<{ Body: { csrf_token?: string } }>(
    PORTAL_BUTTON_PATH,
    {
      preHandler: findCookieSession,
      config: { rateLimit: ssoTokenRateLimit(config) },
      errorHandler: htmlErrorHandler,
      schema: {
        summary: 'Mints a one-time SSO token and redirects the browser to the Reality Portal with it',
        consumes: ['application/x-www-form-urlencoded'],
        body: { type: 'object', properties: { csrf_token: safeString(128) } },
        response: { '4xx': { type: 'string' } },
      },
    },
    async (request, reply) => {
      if (!portalSsoEnabled(config.sso)) return notConfigured(reply);
      if (!request.user || !request.pmSession) return reply.header('cache-control', 'no-store').redirect(LOGIN_REDIRECT, 303);
      const site = request.headers['sec-fetch-site'];
      const crossSite = site !== undefined && site !== 'same-origin' && site !== 'none';
      const cookieToken = request.cookies[PORTAL_BUTTON_CSRF_COOKIE];
      const formToken = request.body?.csrf_token;
      if (crossSite || !cookieToken || !formToken || !secretsEqual(formToken, cookieToken)) {
        // A fresh token: pressing the button on this page works.
        return page(request, reply, 403, { error: 'This page expired. Press the button again.', freshToken: true });
      }
      const { token } = await issuePortalSsoToken(issuer, { userId: request.user.id, sessionId: request.pmSession.id, origin: requestOrigin(request) }, 'button');
      return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').header('referrer-policy', 'no-referrer').redirect(portalRedeemUrl(portal.publicUrl, token), 303);
    },
  );
}
