import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorPage, html, renderPage, sendHtml } from '../../../platform/html';
import { BROWSER_BINDING, BUTTON_PRESS_PARAMETER, PM_SSO_TOKEN_PATH, PORTAL_HANDOFF_PATH } from '../../../platform/sso/browser-binding';
import { issuePortalSsoToken, portalSsoEnabled } from '../../../platform/sso/sso-token-issuance';
import { DoubleSubmitCsrf } from '../../csrf';
import { isClientError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { cookieSession } from '../sessions';
import { ButtonPress } from './button-press';
import { portalSsoTokenIssuer, ssoTokenRateLimit } from './sso-token-requests';

export const PORTAL_BUTTON_PATH = '/sso/reality-portal';
export const PORTAL_BUTTON_CSRF_COOKIE = 'pm_sso_csrf';
const loginRedirect = (returnTo: string) => `/login?${new URLSearchParams({ return_to: returnTo })}`;

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

/** Where the button sends the browser first: the portal binds the flow to this browser there, and hands the press on. */
export function portalHandoffUrl(portalPublicUrl: string, press: string): string {
  const url = new URL(`${portalPublicUrl.replace(/\/+$/, '')}${PORTAL_HANDOFF_PATH}`);
  url.searchParams.set(BUTTON_PRESS_PARAMETER, press);
  return url.toString();
}

/** Where the browser takes the token: the portal's redemption page, which opens the portal session. */
export function portalRedeemUrl(portalPublicUrl: string, token: string): string {
  const url = new URL(`${portalPublicUrl.replace(/\/+$/, '')}/sso/redeem`);
  url.searchParams.set('sso_token', token);
  return url.toString();
}

/**
 * The PM app's "Open Reality Portal" button, one click through three redirects. GET shows who is
 * signed in (session cookie only: a Bearer header is not a browser sign-in) and a form; POST sends the
 * browser, with a press (./button-press.ts), to the portal's /sso/handoff, which sets a binding cookie
 * and comes back to GET /sso/reality-portal/token?binding=<the cookie's SHA-256>&press=<…>; that mints
 * the one-time SSO token bound to the binding (`bnd`) and sends the browser to the portal's /sso/redeem
 * with it (303, never cached, no Referer). The portal opens a session only in the browser holding the
 * binding cookie, so a token minted in one browser cannot sign another in (platform/sso/browser-binding.ts).
 *
 * CSRF on the form, beyond the session cookie's SameSite=Lax (a cross-site POST carries no session): a
 * double-submit token like the login page's (api/csrf.ts), and a cross-site Sec-Fetch-Site is refused
 * outright. The token step is a GET another site can link to, with a binding of the attacker's own
 * browser: it mints only with the press this browser's own button press made, and otherwise shows the
 * button page. Else a lured signed-in user would get a token bound to the attacker's browser, sitting in
 * a URL (history, logs) for the attacker to redeem as that user.
 */
export default async function portalButton(app: FastifyInstance) {
  const { db, config } = app.services;
  const { portal } = config.sso;
  const issuer = portalSsoTokenIssuer(app);
  // Browsers apply form-action to the redirect after the submission: the portal's origin must be allowed.
  const formAction = ["'self'", new URL(portal.publicUrl).origin];

  const csrf = new DoubleSubmitCsrf(PORTAL_BUTTON_CSRF_COOKIE, PORTAL_BUTTON_PATH, config.http.secureCookies);
  const buttonPress = new ButtonPress(config.http.secureCookies, config.lifetimes.oauthStateSeconds);

  const page = (request: FastifyRequest, reply: FastifyReply, status: number, options: { error?: string; freshToken?: boolean } = {}) => {
    const csrfToken = options.freshToken ? csrf.renew(reply) : csrf.issue(request, reply);
    return sendHtml(reply, status, buttonPage({ email: request.user!.email, csrfToken, ...(options.error ? { error: options.error } : {}) }), { formAction });
  };

  const notConfigured = (reply: FastifyReply) =>
    sendHtml(reply, 404, errorPage('Reality Portal', 'Single sign-on into the Reality Portal is not configured on this server.'));

  /** Finds the cookie session (and sets request.user) before the per-user rate limit runs. */
  const findCookieSession = async (request: FastifyRequest) => {
    const live = await cookieSession(db, config, request);
    request.user = live?.user ?? null;
    request.pmSession = live?.session ?? null;
  };

  const htmlErrorHandler = (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    if (!isClientError(error)) throw error;
    // Refused before the preHandler (content type, schema): no user yet, and the routes answer pages only.
    if (!request.user) {
      return sendHtml(reply, error.statusCode ?? 400, errorPage('Reality Portal', 'The request was malformed. Open the Reality Portal again from the PM app.'));
    }
    if (error.statusCode === 429) return page(request, reply, 429, { error: 'Too many attempts. Wait a minute and try again.' });
    return page(request, reply, 400, { error: 'The request was malformed. Press the button again.' });
  };

  const signInFirst = (reply: FastifyReply, returnTo: string) => reply.header('cache-control', 'no-store').redirect(loginRedirect(returnTo), 303);

  app.get(
    PORTAL_BUTTON_PATH,
    { preHandler: findCookieSession, schema: { summary: 'The "Open Reality Portal" page of the PM app', response: { 200: { type: 'string' } } } },
    async (request, reply) => {
      if (!portalSsoEnabled(config.sso)) return notConfigured(reply);
      if (!request.user) return signInFirst(reply, PORTAL_BUTTON_PATH);
      return page(request, reply, 200);
    },
  );

  app.post<{ Body: { csrf_token?: string } }>(
    PORTAL_BUTTON_PATH,
    {
      preHandler: findCookieSession,
      errorHandler: htmlErrorHandler,
      schema: {
        summary: "Sends the browser to the Reality Portal's /sso/handoff, the first step of its single sign-on",
        consumes: ['application/x-www-form-urlencoded'],
        body: { type: 'object', properties: { csrf_token: safeString(128) } },
        response: { '4xx': { type: 'string' } },
      },
    },
    async (request, reply) => {
      if (!portalSsoEnabled(config.sso)) return notConfigured(reply);
      if (!request.user || !request.pmSession) return signInFirst(reply, PORTAL_BUTTON_PATH);
      const site = request.headers['sec-fetch-site'];
      const crossSite = site !== undefined && site !== 'same-origin' && site !== 'none';
      if (crossSite || !csrf.matches(request, request.body?.csrf_token)) {
        // A fresh token: pressing the button on this page works.
        return page(request, reply, 403, { error: 'This page expired. Press the button again.', freshToken: true });
      }
      return reply.header('cache-control', 'no-store').redirect(portalHandoffUrl(portal.publicUrl, buttonPress.start(reply)), 303);
    },
  );

  app.get<{ Querystring: { binding?: string; press?: string } }>(
    PM_SSO_TOKEN_PATH,
    {
      preHandler: findCookieSession,
      config: { rateLimit: ssoTokenRateLimit(config) },
      errorHandler: htmlErrorHandler,
      schema: {
        summary: 'Mints the one-time SSO token bound to the browser the portal named, and redirects the browser to the Reality Portal with it',
        querystring: { type: 'object', properties: { binding: safeString(128), [BUTTON_PRESS_PARAMETER]: safeString(128) } },
        response: { '4xx': { type: 'string' } },
      },
    },
    async (request, reply) => {
      if (!portalSsoEnabled(config.sso)) return notConfigured(reply);
      const { binding, press } = request.query;
      if (!binding || !BROWSER_BINDING.test(binding)) {
        return sendHtml(reply, 400, errorPage('Reality Portal', 'This link to the Reality Portal is incomplete. Open the Reality Portal again from the PM app.'));
      }
      // After the sign-in, the login page comes back to this step: the binding and press cookies still wait.
      if (!request.user || !request.pmSession) {
        return signInFirst(reply, `${PM_SSO_TOKEN_PATH}?${new URLSearchParams({ binding, ...(press === undefined ? {} : { press }) })}`);
      }
      // Not this browser's own press (a link from elsewhere, or a press used up): the user decides, with the button.
      if (!buttonPress.matches(request, press)) return page(request, reply, 200);
      const { token } = await issuePortalSsoToken(
        issuer,
        { userId: request.user.id, sessionId: request.pmSession.id, browserBinding: binding, origin: requestOrigin(request) },
        'button',
      );
      buttonPress.usedUp(reply);
      return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').header('referrer-policy', 'no-referrer').redirect(portalRedeemUrl(portal.publicUrl, token), 303);
    },
  );
}
