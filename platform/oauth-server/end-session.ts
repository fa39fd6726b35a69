import type { CommonQueryMethods } from 'slonik';
import { findClient } from '../../db/queries/oauth-clients';
import { isLivePmSession } from '../../db/queries/pm-sessions';
import { UUID } from '../uuid';
import { redirectUriProblem } from './clients';
import { verifyIdTokenHint } from './id-tokens';
import type { SigningKeys } from './signing-keys';

/**
 * OpenID Connect RP-Initiated Logout 1.0: what a logout request asks for, decided before anything
 * changes. A PM session ends without a question only when an id_token of ours names the browser's own
 * session (its cookie). Otherwise the user is asked: a hint for another session than the browser's, no
 * hint at all, or a browser that presents no session while the hint's `sid` is live (a cross-site POST
 * carries no SameSite=Lax cookie; the confirmation form, posted from our page, does). An id_token alone
 * never ends a session: any relying party holds one, and a leaked copy stays usable as a hint long after
 * it expired. A request that cannot be trusted (a bad hint, a client or post_logout_redirect_uri that
 * does not match) is refused before anything happens. The browser is sent back only to a
 * post_logout_redirect_uri registered, exactly, for the hint's or client_id's client.
 */

export interface EndSessionParameters {
  id_token_hint?: string | undefined;
  client_id?: string | undefined;
  post_logout_redirect_uri?: string | undefined;
  state?: string | undefined;
}

/** The browser's live PM session, if it presents one. */
export interface BrowserSession {
  userId: string;
  sessionId: string;
}

export interface EndSessionTarget {
  /** The client the request came from, when known and live. */
  clientId: string | undefined;
  /** Where to send the browser afterwards (post_logout_redirect_uri with state), when allowed. */
  redirectTo: string | undefined;
}

export type EndSessionPlan =
  | { kind: 'refuse'; reason: string; message: string; clientId: string | undefined }
  /** End the browser's session. */
  | ({ kind: 'end' } & EndSessionTarget)
  /** Ask the user first (form POST with a CSRF token); `reason` says what the page tells them. */
  | ({ kind: 'confirm'; reason: 'other_session' | 'id_token_hint_missing' | 'no_browser_session' } & EndSessionTarget)
  /** No session to end: say so, or go back to the client. */
  | ({ kind: 'signed_out' } & EndSessionTarget);

export interface EndSessionContext {
  db: CommonQueryMethods;
  keys: SigningKeys;
  issuer: string;
  /** The longest a PM session lives: an id_token_hint that expired longer ago names a session that has ended. */
  sessionSeconds: number;
}

/** The redirect after logout: the client's registered post_logout_redirect_uri (exact match) with state. */
async function logoutTarget(
  db: CommonQueryMethods,
  parameters: EndSessionParameters,
  clientId: string | undefined,
): Promise<EndSessionTarget | { refuse: string; message: string }> {
  const client = clientId === undefined ? null : await findClient(db, clientId);
  const live = client !== null && client.revokedAt === null;
  const uri = parameters.post_logout_redirect_uri;
  if (uri === undefined) return { clientId: live ? clientId : undefined, redirectTo: undefined };
  if (!live) return { refuse: 'post_logout_redirect_uri_without_client', message: 'The application that sent you here is unknown, so you cannot be sent back to it.' };
  if (!client.postLogoutRedirectUris.includes(uri) || redirectUriProblem(uri) !== undefined) {
    return { refuse: 'post_logout_redirect_uri_not_registered', message: 'The address the application wants to send you back to after signing out is not registered for it.' };
  }
  const redirectTo = new URL(uri);
  if (parameters.state !== undefined) redirectTo.searchParams.append('state', parameters.state);
  return { clientId: client.id, redirectTo: redirectTo.toString() };
}

export async function planEndSession(context: EndSessionContext, parameters: EndSessionParameters, browser: BrowserSession | null): Promise<EndSessionPlan> {
  const refuse = (reason: string, message: string, clientId?: string): EndSessionPlan => ({ kind: 'refuse', reason, message, clientId });
  let hint;
  if (parameters.id_token_hint !== undefined) {
    const check = await verifyIdTokenHint(parameters.id_token_hint, context.keys, {
      issuer: context.issuer,
      acceptExpiredSeconds: context.sessionSeconds,
      now: new Date(),
    });
    if (!check.ok) return refuse(`id_token_hint_${check.reason}`, 'The sign-out link is not valid. You are still signed in.', parameters.client_id);
    hint = check.hint;
    if (parameters.client_id !== undefined && parameters.client_id !== hint.clientId) {
      return refuse('client_id_mismatch', 'The sign-out link names two different applications. You are still signed in.', hint.clientId);
    }
  }
  const clientId = hint?.clientId ?? parameters.client_id;
  if (hint === undefined && clientId !== undefined) {
    const client = await findClient(context.db, clientId);
    if (!client || client.revokedAt !== null) return refuse('unknown_client', 'The application that sent you here is unknown.');
  }
  const target = await logoutTarget(context.db, parameters, clientId);
  if ('refuse' in target) return refuse(target.refuse, target.message, clientId);

  if (hint === undefined) return browser ? { kind: 'confirm', reason: 'id_token_hint_missing', ...target } : { kind: 'signed_out', ...target };
  if (browser) {
    return browser.sessionId === hint.sid && browser.userId === hint.sub ? { kind: 'end', ...target } : { kind: 'confirm', reason: 'other_session', ...target };
  }
  const named = hint.sid !== undefined && UUID.test(hint.sid) && UUID.test(hint.sub) && (await isLivePmSession(context.db, hint.sid, hint.sub));
  return named ? { kind: 'confirm', reason: 'no_browser_session', ...target } : { kind: 'signed_out', ...target };
}

/** The confirmation form, submitted: the user asked for it, so the browser's session ends; the client is checked as without a hint. */
export async function planConfirmedEndSession(context: EndSessionContext, parameters: EndSessionParameters, browser: BrowserSession | null): Promise<EndSessionPlan> {
  const plan = await planEndSession(context, { ...parameters, id_token_hint: undefined }, browser);
  return plan.kind === 'confirm' ? { kind: 'end', clientId: plan.clientId, redirectTo: plan.redirectTo } : plan;
}
