import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { html } from '../../../platform/html';
import { apiServerTokenContext } from '../../../platform/sso/api-server-token-context';
import { BUTTON_PRESS, BUTTON_PRESS_PARAMETER, newBrowserBinding, PM_SSO_TOKEN_PATH, PORTAL_HANDOFF_PATH } from '../../../platform/sso/browser-binding';
import { redeemSsoToken, type SsoRedemption, type SsoRedemptionRejection, type SsoTokenPresenter } from '../../../platform/sso/sso-redemption';
import { auditSsoRejection } from '../../../platform/sso/portal-sign-in';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { htmlErrorHandler, sendProblemPage } from '../pages';
import { jsonTransientFaultHandler } from '../transient-faults';
import { startBrowserPortalSession } from './portal-sessions';

/** The browser's half of the button's token (platform/sso/browser-binding.ts): set by /sso/handoff, used once by /sso/redeem. */
export const SSO_BINDING_COOKIE = 'portal_sso_binding';
const BINDING_COOKIE_PATH = '/sso';

/** What the user reads when the PM app's sign-in link did not open the portal, and the status it comes with. */
const REJECTIONS: Record<SsoRedemptionRejection, { status: 400 | 401 | 403; message: string }> = {
  browser_mismatch: { status: 403, message: 'This sign-in link was not started in this browser. Start again from the PM app.' },
  replayed: { status: 401, message: 'This sign-in link has already been used. Open the Reality Portal again from the PM app.' },
  expired: { status: 401, message: 'This sign-in link has expired. Open the Reality Portal again from the PM app.' },
  pm_session_ended: { status: 401, message: 'Your PM app session has ended. Sign in to the PM app again, then open the Reality Portal from there.' },
  user_disabled: { status: 401, message: 'Your account is disabled. Ask an administrator for help.' },
  bad_signature: { status: 401, message: 'This sign-in link was not issued by the PM app.' },
  wrong_audience: { status: 401, message: 'This sign-in link is not meant for the Reality Portal.' },
  wrong_issuer: { status: 401, message: 'This sign-in link was not issued by the PM app.' },
  wrong_type: { status: 401, message: 'This is not a Reality Portal sign-in link.' },
  malformed: { status: 400, message: 'This sign-in link is damaged or incomplete. Open the Reality Portal again from the PM app.' },
};

const SSO_TOKEN = safeString(8192);

export const portalUserSchema = {
  type: 'object',
  required: ['id', 'email', 'displayName', 'pmUserId'],
  properties: { id: { type: 'string' }, email: { type: 'string' }, displayName: { type: 'string' }, pmUserId: { type: ['string', 'null'] } },
} as const;

/** The JSON API's words for a browser's token. */
const API_BROWSER_TOKEN = "This SSO token belongs to a browser's sign-in through the PM app; an API consumer asks POST /api/v1/sso/token for its own.";

/**
 * Redemption of the PM app's one-time SSO token ("Open Reality Portal"). The button sends the browser
 * to GET /sso/handoff, which gives it a binding cookie and sends it to the PM app's
 * /sso/reality-portal/token with the cookie's hash; the PM app mints a token bound to that hash and
 * sends the browser to GET /sso/redeem?sso_token=…, which opens a session only in the browser holding
 * the cookie, and sends it on to the portal's page. An API consumer posts an unbound token (the token
 * exchange's) to POST /api/v1/sso/redeem. Both open a portal session (cookie; the API also answers its
 * token), replacing the one the browser held, and start the session's SSO session workflow.
 */
export default async function redeem(app: FastifyInstance) {
  const { portal } = app;
  const { audit, config, workflows } = portal;
  const pmAppUrl = config.http.publicBaseUrl.replace(/\/+$/, '');
  const startAgain = html`<p><a href="${pmAppUrl}/sso/reality-portal">Start again from the PM app</a> · <a href="/">Reality Portal</a></p>`;
  const context = {
    ...apiServerTokenContext(portal),
    settings: { portalSessionSeconds: config.sso.portalSessionSeconds, idleSeconds: config.sso.sessionIdleSeconds },
  };

  const redeemFor = async (request: FastifyRequest, reply: FastifyReply, token: string | undefined, presenter: SsoTokenPresenter): Promise<SsoRedemption> => {
    if (!token) {
      await auditSsoRejection(audit, { method: 'sso_token', reason: 'malformed', clientId: context.clientId, origin: requestOrigin(request) });
      return { ok: false, reason: 'malformed' };
    }
    const redemption = await redeemSsoToken(context, token, presenter, requestOrigin(request));
    if (redemption.ok) {
      const { session, pmUserId, pmSessionId } = redemption;
      await startBrowserPortalSession(portal, request, reply, session);
      void workflows.ensureStarted({ id: session.id, pmSessionId, pmUserId, expiresAt: session.expiresAt }, request.log);
    }
    return redemption;
  };

  app.get<{ Querystring: { press?: string } }>(
    PORTAL_HANDOFF_PATH,
    {
      schema: {
        querystring: { type: 'object', properties: { [BUTTON_PRESS_PARAMETER]: { type: 'string', pattern: BUTTON_PRESS.source } } },
        response: { '4xx': { type: 'string' }, '5xx': { type: 'string' } },
      },
      errorHandler: htmlErrorHandler,
    },
    async (request, reply) => {
      const { cookieValue, binding } = newBrowserBinding();
      reply.setCookie(SSO_BINDING_COOKIE, cookieValue, {
        path: BINDING_COOKIE_PATH,
        httpOnly: true,
        // Lax: the cookie must come along when the PM app sends the browser back (a top-level GET).
        sameSite: 'lax',
        secure: config.http.secureCookies,
        maxAge: config.lifetimes.oauthStateSeconds,
      });
      const tokenUrl = new URL(`${pmAppUrl}${PM_SSO_TOKEN_PATH}`);
      tokenUrl.searchParams.set('binding', binding);
      // The PM app's proof that its button was pressed in this browser: the token step mints only with it.
      if (request.query.press !== undefined) tokenUrl.searchParams.set(BUTTON_PRESS_PARAMETER, request.query.press);
      return reply.header('cache-control', 'no-store').redirect(tokenUrl.href, 303);
    },
  );

  app.get<{ Querystring: { sso_token?: string } }>(
    '/sso/redeem',
    {
      schema: { querystring: { type: 'object', properties: { sso_token: SSO_TOKEN } }, response: { '4xx': { type: 'string' }, '5xx': { type: 'string' } } },
      errorHandler: htmlErrorHandler,
    },
    async (request, reply) => {
      const redemption = await redeemFor(request, reply, request.query.sso_token, { browserBindingCookie: request.cookies[SSO_BINDING_COOKIE] });
      // One use once there is an answer, sign-in or refusal: the next sign-in starts from the button again.
      // A fault (503, thrown) decided nothing and keeps it, so a reload of this link can still sign in.
      reply.clearCookie(SSO_BINDING_COOKIE, { path: BINDING_COOKIE_PATH });
      if (!redemption.ok) {
        const { status, message } = REJECTIONS[redemption.reason];
        return sendProblemPage(reply, status, 'Could not open the Reality Portal', message, startAgain);
      }
      // The token was in this URL: no cache keeps it, no Referer carries it on.
      return reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer').redirect('/', 303);
    },
  );

  app.post<{ Body: { sso_token: string } }>(
    '/api/v1/sso/redeem',
    {
      schema: {
        body: { type: 'object', required: ['sso_token'], additionalProperties: false, properties: { sso_token: { ...SSO_TOKEN, minLength: 1 } } },
        response: {
          200: {
            type: 'object',
            required: ['sessionToken', 'expiresAt', 'user', 'roles'],
            properties: { sessionToken: { type: 'string' }, expiresAt: { type: 'string' }, user: portalUserSchema, roles: { type: 'array', items: { type: 'string' } } },
          },
          '4xx': errorResponseSchema,
          503: errorResponseSchema,
        },
      },
      // JSON only: a form post could come from any site and sign the visitor into someone else's portal account.
      preValidation: async (request) => {
        if (!request.headers['content-type']?.startsWith('application/json')) {
          throw new HttpError(415, 'unsupported_media_type', 'Send the SSO token as application/json');
        }
      },
      errorHandler: jsonTransientFaultHandler,
    },
    async (request, reply) => {
      const redemption = await redeemFor(request, reply, request.body.sso_token, 'api');
      if (!redemption.ok) {
        const { status, message } = REJECTIONS[redemption.reason];
        throw new HttpError(status, redemption.reason, redemption.reason === 'browser_mismatch' ? API_BROWSER_TOKEN : message);
      }
      const { session } = redemption;
      return reply.header('cache-control', 'no-store').send({
        sessionToken: session.token,
        expiresAt: session.expiresAt.toISOString(),
        user: { id: session.user.id, email: session.user.email, displayName: session.user.displayName, pmUserId: session.user.pmUserId },
        roles: session.roles,
      });
    },
  );
}
