import type { FastifyReply, FastifyRequest } from 'fastify';
import { html, renderPage, sendHtml, type SafeHtml } from '../../platform/html';
import type { PortalPrincipal } from '../../platform/portal/sessions';
import { isClientError } from '../errors';
import { askToRetryLater } from '../plugins/errors';
import { isTransientPortalFault } from './transient-faults';

/** The Reality Portal's pages: no scripts; forms post only to the portal itself. */

const METHOD_LABELS: Record<PortalPrincipal['session']['method'], string> = {
  sso_token: 'single sign-on from the PM app (Open Reality Portal)',
  oidc: 'single sign-on with your PM app account (OpenID Connect)',
  password: 'your portal account (email and password)',
};

/** Why a page shows the visitor signed out although their browser had a session (session sync ended it just now). */
export const SESSION_END_NOTICES: Record<string, string> = {
  pm_session_ended: 'You were signed out because your PM app session ended.',
  user_disabled: 'You were signed out because your account is disabled.',
  idle: 'You were signed out after a period of inactivity.',
  expired: 'Your portal session expired. Sign in again.',
};

export function signedInPage(principal: PortalPrincipal, csrfToken: string): string {
  const { user, roles, session } = principal;
  return renderPage(
    'Reality Portal',
    html`<h1>Reality Portal</h1>
<p>Signed in as <strong>${user.displayName}</strong> (${user.email})</p>
<h2>Your portal roles</h2>
${roles.length > 0 ? html`<ul class="roles">${roles.map((role) => html`<li>${role}</li>`)}</ul>` : html`<p class="note">You have no portal roles.</p>`}
<p class="note">Signed in with ${METHOD_LABELS[session.method]}. This session ends at the latest at ${session.expiresAt.toISOString()}.</p>
<form method="post" action="/logout">
<input type="hidden" name="csrf_token" value="${csrfToken}">
<div class="actions"><button type="submit">Sign out</button></div>
</form>`,
  );
}

export function signedOutPage(notice?: string): string {
  return renderPage(
    'Reality Portal',
    html`<h1>Reality Portal</h1>
${notice ? html`<p class="note" role="status">${notice}</p>` : ''}
<ul>
<li><a href="/sso/login">Sign in with the PM app</a></li>
<li><a href="/login">Portal account sign-in</a></li>
</ul>`,
  );
}

/** A page that explains what went wrong and how to go on. */
export function problemPage(title: string, message: string, next: SafeHtml = html`<p><a href="/">Back to the Reality Portal</a></p>`): string {
  return renderPage(title, html`<h1>${title}</h1><p class="error" role="alert">${message}</p>${next}`);
}

export function sendProblemPage(reply: FastifyReply, statusCode: number, title: string, message: string, next?: SafeHtml): FastifyReply {
  return sendHtml(reply, statusCode, problemPage(title, message, next));
}

export function sendTemporarilyUnavailablePage(reply: FastifyReply): FastifyReply {
  return sendProblemPage(askToRetryLater(reply), 503, 'Try again shortly', 'The Reality Portal could not complete this just now. Nothing was changed; please try again in a moment.');
}

/**
 * The error handler of the portal's HTML routes: a transient fault is a 503 page (never a refusal),
 * a malformed request a 400 page, anything else a 500 page whose details stay in the log.
 */
export function htmlErrorHandler(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (isTransientPortalFault(error)) {
    request.log.warn({ err: error }, 'request failed on a transient fault');
    return sendTemporarilyUnavailablePage(reply);
  }
  if (isClientError(error)) {
    const status = error.statusCode && error.statusCode !== 400 ? error.statusCode : 400;
    return sendProblemPage(reply, status, 'Bad request', status === 429 ? 'Too many attempts. Wait a minute and try again.' : 'The request was malformed.');
  }
  request.log.error({ err: error }, 'request failed');
  return sendProblemPage(reply, 500, 'Something went wrong', 'An unexpected error occurred.');
}
