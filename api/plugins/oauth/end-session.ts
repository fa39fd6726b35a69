import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { revokeSession } from '../../../db/queries/users';
import type { AuditEntry } from '../../../platform/audit';
import { errorPage, html, renderPage, sendHtml } from '../../../platform/html';
import { planConfirmedEndSession, planEndSession, type EndSessionParameters, type EndSessionPlan } from '../../../platform/oauth-server/end-session';
import { hashBearerValue } from '../../../platform/secrets';
import { DoubleSubmitCsrf } from '../../csrf';
import { isClientError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { signalPmSessionsEnded } from '../../sso-session-signals';
import { cookieSession, SESSION_COOKIE } from '../sessions';

export const END_SESSION_PATH = '/oauth/logout';
export const LOGOUT_CSRF_COOKIE = 'pm_logout_csrf';

interface EndSessionRequest extends EndSessionParameters {
  ui_locales?: string;
  logout_hint?: string;
  /** The confirmation form's own fields. */
  csrf_token?: string;
  confirm?: string;
}

// Each parameter once (a repeated one arrives as an array and fails), bounded, without NUL.
const parametersSchema = {
  type: 'object',
  properties: {
    id_token_hint: safeString(8192),
    client_id: safeString(256),
    post_logout_redirect_uri: safeString(2048),
    state: safeString(2048),
    ui_locales: safeString(256),
    logout_hint: safeString(1024),
    csrf_token: safeString(128),
    confirm: safeString(16),
  },
} as const;

const htmlResponse = { 200: { type: 'string' } } as const;

const CONFIRMATION_REASONS: Record<Extract<EndSessionPlan, { kind: 'confirm' }>['reason'], string> = {
  other_session: 'An application asked to sign you out, but it was signed in with another sign-in than this one.',
  id_token_hint_missing: 'An application asked to sign you out.',
  no_browser_session: 'An application asked to sign you out.',
};

/** `email`: the browser's signed-in user; absent when the request came without the session cookie. */
function confirmationPage(email: string | undefined, plan: Extract<EndSessionPlan, { kind: 'confirm' }>, parameters: EndSessionParameters, csrfToken: string): string {
  const hidden = (name: string, value: string | undefined) => (value === undefined ? '' : html`<input type="hidden" name="${name}" value="${value}">`);
  return renderPage(
    'Sign out?',
    html`<h1>Sign out of your account?</h1>
<p>${CONFIRMATION_REASONS[plan.reason]}</p>
<p class="note">${email === undefined ? '' : `Signed in as ${email}. `}If you did not ask to sign out, close this page.</p>
<form method="post" action="${END_SESSION_PATH}">
<input type="hidden" name="csrf_token" value="${csrfToken}">
${hidden('client_id', plan.clientId)}
${hidden('post_logout_redirect_uri', plan.redirectTo === undefined ? undefined : parameters.post_logout_redirect_uri)}
${hidden('state', plan.redirectTo === undefined ? undefined : parameters.state)}
<div class="actions"><button type="submit" name="confirm" value="yes">Sign out</button></div>
</form>`,
  );
}

const signedOutPage = () => renderPage('Signed out', html`<h1>You are signed out</h1><p>You can close this page.</p>`);

/**
 * OpenID Connect RP-Initiated Logout 1.0 at `GET|POST /oauth/logout` (the end_session_endpoint).
 * What happens is planned by platform/oauth-server/end-session.ts: the browser's session, when a valid
 * id_token_hint names it, ends at once (`rp_logout`, audited OidcLogout, its portal sessions told
 * through signalPmSessionsEnded), then a 303 to the registered post_logout_redirect_uri with state, or
 * the "You are signed out" page. Anything less certain asks the user (a form POST with a double-submit
 * CSRF token, as /login does; nothing is refused, so nothing is audited until they answer) or is refused
 * with a page, audited OidcLogoutRejected. ui_locales and logout_hint are accepted and ignored.
 */
export default async function endSession(app: FastifyInstance) {
  const { db, audit, config, temporal } = app.services;
  const context = { db, keys: app.authorizationServer.keys, issuer: app.authorizationServer.issuer, sessionSeconds: config.lifetimes.sessionSeconds };

  const csrf = new DoubleSubmitCsrf(LOGOUT_CSRF_COOKIE, END_SESSION_PATH, config.http.secureCookies);

  const htmlErrorHandler = (error: unknown, _request: FastifyRequest, reply: FastifyReply) => {
    if (!isClientError(error)) throw error;
    return sendHtml(reply, 400, errorPage('This sign-out link cannot be used', 'The request is malformed: each parameter may appear once. You are still signed in.'));
  };

  /** After the logout (or when there was none to do): back to the client, or the signed-out page. */
  const finish = (reply: FastifyReply, redirectTo: string | undefined) => {
    if (redirectTo === undefined) return sendHtml(reply, 200, signedOutPage());
    return reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer').redirect(redirectTo, 303);
  };

  async function answer(request: FastifyRequest, reply: FastifyReply, parameters: EndSessionRequest, confirmation: boolean) {
    const origin = requestOrigin(request);
    const live = await cookieSession(db, config, request);
    const browser = live ? { userId: live.user.id, sessionId: live.session.id } : null;
    const actor: AuditEntry['actor'] = browser ? { type: 'user', id: browser.userId } : { type: 'user' };
    const rejected = async (reason: string, clientId: string | undefined) =>
      audit.record({ action: 'OidcLogoutRejected', outcome: 'failure', actor, ...(browser ? { userId: browser.userId } : {}), ...(clientId ? { clientId } : {}), origin, details: { reason } });

    if (confirmation) {
      if (!csrf.matches(request, parameters.csrf_token)) {
        await rejected('csrf_token_wrong', undefined);
        return sendHtml(reply, 403, errorPage('Sign-out refused', 'This form was not sent from the sign-out page we showed you. You are still signed in.'));
      }
      csrf.clear(reply);
    }
    const plan = confirmation ? await planConfirmedEndSession(context, parameters, browser) : await planEndSession(context, parameters, browser);

    if (plan.kind === 'refuse') {
      await rejected(plan.reason, plan.clientId);
      return sendHtml(reply, 400, errorPage('You are still signed in', plan.message));
    }
    if (plan.kind === 'signed_out') return finish(reply, plan.redirectTo);
    if (plan.kind === 'confirm') {
      const token = csrf.issue(request, reply);
      // The form's answer redirects to the client, which form-action must allow (browsers apply it to redirects).
      const formAction = ["'self'", ...(plan.redirectTo === undefined ? [] : [new URL(plan.redirectTo).origin])];
      return sendHtml(reply, 200, confirmationPage(live?.user.email, plan, parameters, token), { formAction });
    }

    // An 'end' plan is only ever the browser's own session.
    const userId = browser!.userId;
    const sessionToken = request.cookies[SESSION_COOKIE]!;
    const ended = await db.transaction(async (transaction) => {
      const sessionId = await revokeSession(transaction, hashBearerValue(sessionToken), 'rp_logout');
      if (sessionId === null) return null;
      await audit.record(
        {
          action: 'OidcLogout',
          outcome: 'success',
          actor: { type: 'user', id: userId },
          userId,
          ...(plan.clientId ? { clientId: plan.clientId } : {}),
          origin,
          details: { sid: sessionId, confirmed: confirmation },
        },
        transaction,
      );
      return sessionId;
    });
    reply.clearCookie(SESSION_COOKIE, { path: '/' });
    // The portal sessions that came from it follow through their SSO session workflows (never throws).
    if (ended) await signalPmSessionsEnded({ temporal, db, log: request.log, deadlineMs: config.sso.temporalDeadlineMs }, [ended], 'logout');
    return finish(reply, plan.redirectTo);
  }

  app.get<{ Querystring: EndSessionRequest }>(
    END_SESSION_PATH,
    { schema: { querystring: parametersSchema, response: htmlResponse }, errorHandler: htmlErrorHandler },
    // Only the confirmation form's POST confirms: a link cannot.
    async (request, reply) => answer(request, reply, request.query, false),
  );

  app.post<{ Body: EndSessionRequest }>(
    END_SESSION_PATH,
    { schema: { consumes: ['application/x-www-form-urlencoded'], body: parametersSchema, response: htmlResponse }, errorHandler: htmlErrorHandler },
    async (request, reply) => {
      const parameters = request.body ?? {};
      return answer(request, reply, parameters, parameters.confirm !== undefined);
    },
  );
}
