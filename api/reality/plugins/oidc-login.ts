import type { FastifyInstance, FastifyReply } from 'fastify';
import * as client from 'openid-client';
import { html } from '../../../platform/html';
import { auditSsoRejection, signInWithPmSession, type SsoSignInRejection } from '../../../platform/sso/portal-sign-in';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { htmlErrorHandler, sendProblemPage } from '../pages';
import { isTransientPortalFault } from '../transient-faults';
import { startBrowserPortalSession } from './portal-sessions';

/** The flow's state, nonce and PKCE verifier, kept in the browser that started it (and only there). */
export const OIDC_FLOW_COOKIE = 'portal_oidc_flow';
const FLOW_COOKIE_PATH = '/sso';
const SCOPE = 'openid profile email';

interface Flow {
  state: string;
  nonce: string;
  verifier: string;
}

function readFlow(value: string | undefined): Flow | undefined {
  if (!value || value.length > 1024) return undefined;
  try {
    const flow = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as Partial<Flow>;
    const valid = [flow.state, flow.nonce, flow.verifier].every((part) => typeof part === 'string' && /^[A-Za-z0-9_-]{20,128}$/.test(part));
    return valid ? (flow as Flow) : undefined;
  } catch {
    return undefined;
  }
}

const START_AGAIN = html`<p><a href="/sso/login">Sign in with the PM app again</a> · <a href="/">Reality Portal</a></p>`;

/**
 * The error codes an authorization or token response may carry (RFC 6749 sections 4.1.2.1 and 5.2,
 * OpenID Connect Core 3.1.2.6). The callback's `error` is whatever the URL says, so only these are
 * audited or shown; anything else is 'unknown'.
 */
const OAUTH_ERROR_CODES = new Set([
  'invalid_request',
  'unauthorized_client',
  'access_denied',
  'unsupported_response_type',
  'invalid_scope',
  'server_error',
  'temporarily_unavailable',
  'invalid_client',
  'invalid_grant',
  'unsupported_grant_type',
  'interaction_required',
  'login_required',
  'account_selection_required',
  'consent_required',
  'invalid_request_uri',
  'invalid_request_object',
  'request_not_supported',
  'request_uri_not_supported',
  'registration_not_supported',
]);

function knownErrorCode(error: string): string {
  return OAUTH_ERROR_CODES.has(error) ? error : 'unknown';
}

/** Pages for the authorization server's error answers (RFC 6749 section 4.1.2.1, OpenID Connect Core 3.1.2.6). */
function authorizationErrorPage(error: string): { status: number; message: string } {
  if (error === 'access_denied') return { status: 403, message: 'The PM app did not allow the sign-in (access was denied).' };
  if (['login_required', 'interaction_required', 'consent_required', 'account_selection_required'].includes(error)) {
    return { status: 401, message: 'You need to sign in to the PM app first.' };
  }
  if (error === 'temporarily_unavailable' || error === 'server_error') return { status: 503, message: 'The PM app could not sign you in just now. Try again in a moment.' };
  return { status: 400, message: `The PM app refused the sign-in (${error}).` };
}

const SIGN_IN_REFUSALS: Record<SsoSignInRejection, { status: number; message: string }> = {
  pm_session_ended: { status: 401, message: 'Your PM app session has ended. Sign in again.' },
  user_disabled: { status: 401, message: 'Your account is disabled. Ask an administrator for help.' },
  malformed: { status: 400, message: "The PM app's answer did not name your session." },
  replayed: { status: 401, message: 'This sign-in was already used.' },
};

const callbackQuerySchema = {
  type: 'object',
  properties: { code: safeString(2048), state: safeString(512), iss: safeString(2048), error: safeString(256), error_description: safeString(1024) },
} as const;

/**
 * "Sign in with the PM app": the OpenID Connect authorization code flow with openid-client, the portal
 * being the api-server's first-party confidential client (no consent page). GET /sso/login sends the
 * browser to the api-server's authorization endpoint with PKCE (S256), state and nonce; GET /sso/callback
 * redeems the code, validates the id_token and opens a portal session linked to the PM session (`sid`).
 */
export default async function oidcLogin(app: FastifyInstance) {
  const { db, audit, config, relyingParty, workflows } = app.portal;
  const { publicUrl, clientId } = config.sso.portal;
  const redirectUri = `${publicUrl}/sso/callback`;

  const notConfigured = (reply: FastifyReply) =>
    sendProblemPage(reply, 503, 'Sign-in with the PM app is not available', 'This Reality Portal is not set up for sign-in with the PM app (REALITY_OIDC_CLIENT_SECRET is unset). Use your portal account.');

  app.get('/sso/login', { schema: { response: { '5xx': { type: 'string' } } }, errorHandler: htmlErrorHandler }, async (request, reply) => {
    if (!relyingParty) return notConfigured(reply);
    const configuration = await relyingParty.configuration();
    const flow: Flow = { state: client.randomState(), nonce: client.randomNonce(), verifier: client.randomPKCECodeVerifier() };
    const authorizationUrl = client.buildAuthorizationUrl(configuration, {
      redirect_uri: redirectUri,
      scope: SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(flow.verifier),
      code_challenge_method: 'S256',
      state: flow.state,
      nonce: flow.nonce,
    });
    reply.setCookie(OIDC_FLOW_COOKIE, Buffer.from(JSON.stringify(flow)).toString('base64url'), {
      path: FLOW_COOKIE_PATH,
      httpOnly: true,
      // Lax: the cookie must come along when the api-server sends the browser back (a top-level GET).
      sameSite: 'lax',
      secure: config.http.secureCookies,
      maxAge: config.lifetimes.oauthStateSeconds,
    });
    return reply.header('cache-control', 'no-store').redirect(authorizationUrl.href, 303);
  });

  app.get<{ Querystring: { code?: string; state?: string; error?: string } }>(
    '/sso/callback',
    { schema: { querystring: callbackQuerySchema, response: { '4xx': { type: 'string' }, '5xx': { type: 'string' } } }, errorHandler: htmlErrorHandler },
    async (request, reply) => {
      if (!relyingParty) return notConfigured(reply);
      const flow = readFlow(request.cookies[OIDC_FLOW_COOKIE]);
      reply.clearCookie(OIDC_FLOW_COOKIE, { path: FLOW_COOKIE_PATH });
      const origin = requestOrigin(request);
      const refuse = async (reason: string, status: number, message: string) => {
        await auditSsoRejection(audit, { method: 'oidc', reason, clientId, origin });
        return sendProblemPage(reply, status, 'Could not sign you in', message, START_AGAIN);
      };
      if (!flow) {
        if (request.query.error) {
          const error = knownErrorCode(request.query.error);
          const page = authorizationErrorPage(error);
          return refuse(error, page.status, page.message);
        }
        return refuse('flow_missing', 400, 'This sign-in took too long or was started in another browser. Start again.');
      }

      let claims;
      try {
        const configuration = await relyingParty.configuration();
        // What the browser asked for, on the portal's public URL (never the Host header).
        const currentUrl = new URL(`${publicUrl}${request.url}`);
        const tokens = await client.authorizationCodeGrant(configuration, currentUrl, {
          pkceCodeVerifier: flow.verifier,
          expectedState: flow.state,
          expectedNonce: flow.nonce,
          idTokenExpected: true,
        });
        claims = tokens.claims();
      } catch (error) {
        if (error instanceof client.AuthorizationResponseError) {
          const code = knownErrorCode(error.error);
          const page = authorizationErrorPage(code);
          return refuse(code, page.status, page.message);
        }
        // New metadata or keys may cure what failed: the next sign-in discovers again.
        relyingParty.forget();
        if (isTransientPortalFault(error)) throw error;
        // Name and code only: openid-client's error causes can carry the id_token's parts.
        const { name, message, code } = error as { name?: string; message?: string; code?: string };
        request.log.warn({ error: { name, message, code } }, 'the OpenID Connect callback was refused');
        if (error instanceof client.ResponseBodyError) return refuse(knownErrorCode(error.error), 400, 'The PM app did not accept this sign-in. Start again.');
        const reason = error instanceof client.ClientError && error.code ? error.code : 'invalid_response';
        return refuse(reason, 400, "The PM app's answer could not be verified. Start again.");
      }

      const sid = typeof claims?.sid === 'string' ? claims.sid : undefined;
      if (!claims || !sid) return refuse('malformed', 400, SIGN_IN_REFUSALS.malformed.message);
      const signedIn = await signInWithPmSession(
        db,
        audit,
        { portalSessionSeconds: config.sso.portalSessionSeconds, idleSeconds: config.sso.sessionIdleSeconds },
        { method: 'oidc', pmUserId: claims.sub, pmSessionId: sid, clientId, origin, ...(typeof claims.auth_time === 'number' ? { authTime: claims.auth_time } : {}) },
      );
      if (!signedIn.ok) {
        const { status, message } = SIGN_IN_REFUSALS[signedIn.reason];
        return sendProblemPage(reply, status, 'Could not sign you in', message, START_AGAIN);
      }
      const { session } = signedIn;
      await startBrowserPortalSession(app.portal, request, reply, session);
      void workflows.ensureStarted({ id: session.id, pmSessionId: sid, pmUserId: claims.sub, expiresAt: session.expiresAt }, request.log);
      return reply.header('cache-control', 'no-store').redirect('/', 303);
    },
  );
}
