import fp from 'fastify-plugin';
import cookie from '@fastify/cookie';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../../../platform/config';
import { replacePresentedPortalSession, syncPortalSession, type PortalPrincipal } from '../../../platform/portal/sessions';
import { HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import type { PortalServices } from '../services';

export const PORTAL_SESSION_COOKIE = 'portal_session';

export function setPortalSessionCookie(reply: FastifyReply, config: Config, token: string, expiresAt: Date): void {
  reply.setCookie(PORTAL_SESSION_COOKIE, token, { path: '/', httpOnly: true, sameSite: 'lax', secure: config.http.secureCookies, expires: expiresAt });
}

/**
 * A sign-in's new session into the browser's cookie. A live session the browser still presented ends
 * ('replaced', audited): one browser, one portal session. Quietly: its SSO session workflow is not
 * told, and completes at its next check without ending the PM session (a new sign-in is no logout). A
 * failure to end it is only logged: the browser no longer holds its token, and it ends with its own
 * lifetime or its PM session.
 */
export async function startBrowserPortalSession(
  portal: PortalServices,
  request: FastifyRequest,
  reply: FastifyReply,
  session: { token: string; expiresAt: Date },
): Promise<void> {
  const previous = request.cookies[PORTAL_SESSION_COOKIE];
  setPortalSessionCookie(reply, portal.config, session.token, session.expiresAt);
  if (!previous) return;
  try {
    await replacePresentedPortalSession(portal.db, portal.audit, previous, requestOrigin(request));
  } catch (error) {
    request.log.warn({ err: error }, 'the portal session this sign-in replaced could not be ended');
  }
}

export function clearPortalSessionCookie(reply: FastifyReply): void {
  reply.clearCookie(PORTAL_SESSION_COOKIE, { path: '/' });
}

/** The session token: the cookie (browsers) or, where `bearer` allows, an `Authorization: Bearer` header (API consumers). */
function presentedToken(request: FastifyRequest, bearer: boolean): { token: string; fromCookie: boolean } | undefined {
  const header = request.headers.authorization;
  if (bearer && header?.startsWith('Bearer ')) {
    const token = header.slice('Bearer '.length).trim();
    return token ? { token, fromCookie: false } : undefined;
  }
  const token = request.cookies[PORTAL_SESSION_COOKIE];
  return token ? { token, fromCookie: true } : undefined;
}

export type PortalSessionLookup = { principal: PortalPrincipal } | { principal: null; endedBecause?: string };

/**
 * The portal session the request presents, after session sync (a) (platform/portal/sessions.ts). A
 * session that ended, now or before, clears the browser's cookie. An SSO session whose workflow never
 * started gets another start when the request marks it as used (at most once a minute).
 */
export async function lookUpPortalSession(
  portal: PortalServices,
  request: FastifyRequest,
  reply: FastifyReply,
  options: { bearer: boolean },
): Promise<PortalSessionLookup> {
  const presented = presentedToken(request, options.bearer);
  if (!presented) return { principal: null };
  const sync = await syncPortalSession(portal.db, portal.audit, presented.token, portal.config.sso.sessionIdleSeconds);
  if (sync.state === 'live') {
    const { session, user } = sync.principal;
    if (sync.touched && session.workflowStartedAt === null && session.pmSessionId && user.pmUserId) {
      void portal.workflows.ensureStarted({ id: session.id, pmSessionId: session.pmSessionId, pmUserId: user.pmUserId, expiresAt: session.expiresAt }, request.log);
    }
    return { principal: sync.principal };
  }
  if (presented.fromCookie) clearPortalSessionCookie(reply);
  return sync.state === 'ended' ? { principal: null, endedBecause: sync.reason } : { principal: null };
}

/**
 * Portal sessions: decorates `authenticatePortal`, a preHandler for the JSON routes that need a signed-in
 * portal user (cookie or Bearer session token; else 401), which sets `request.portalUser`.
 */
export default fp(async function portalSessions(app: FastifyInstance) {
  await app.register(cookie);
  app.decorateRequest('portalUser', null);
  app.decorate('authenticatePortal', async (request: FastifyRequest, reply: FastifyReply) => {
    const lookup = await lookUpPortalSession(app.portal, request, reply, { bearer: true });
    if (!lookup.principal) {
      const endedBecause = 'endedBecause' in lookup ? lookup.endedBecause : undefined;
      throw new HttpError(401, 'unauthenticated', endedBecause ? `Sign in again: the portal session ended (${endedBecause})` : 'Sign in first: no valid portal session');
    }
    request.portalUser = lookup.principal;
  });
});
