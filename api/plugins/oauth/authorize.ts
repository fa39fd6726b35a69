import { isClientError } from '../../errors';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { errorPage, html, renderPage, sendHtml } from '../../../platform/html';
import {
  authorizationResponseUrl,
  authorizeWithoutConsent,
  checkAuthorizationRequest,
  decideAuthorizationRequest,
  promptNoneFailure,
  recordAuthorizeRejection,
  resumePendingRequest,
  startConsent,
  storePendingRequest,
  type AuthorizationContext,
  type AuthorizeQuery,
  type ValidAuthorizationRequest,
} from '../../../platform/oauth-server/authorization-requests';
import { verifyIdTokenHint } from '../../../platform/oauth-server/id-tokens';
import { signInServes } from '../../../platform/oauth-server/oidc-request';
import { SCOPE_DESCRIPTIONS } from '../../../platform/oauth-server/scopes';
import { VOICE_PLATFORM_RULES } from '../../../platform/oauth-server/client-metadata';
import type { PmSession, UserRow } from '../../../db/queries/users';
import { cookieSession, cookieSessionUser } from '../sessions';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';

const AUTHORIZE_PARAMETERS = [
  'response_type',
  'client_id',
  'redirect_uri',
  'scope',
  'state',
  'code_challenge',
  'code_challenge_method',
  'nonce',
  'prompt',
  'max_age',
  'id_token_hint',
  'request',
  'request_uri',
] as const;

/**
 * `resume` names a request that was checked and stored while the user signed in (storePendingRequest):
 * the login page's return URL is then `/oauth/authorize?resume=<id>`, short whatever the state's length.
 */
const RESUME_PARAMETER = 'resume';

const querystringSchema = {
  type: 'object',
  // Each parameter at most once (RFC 6749 section 3.1): a repeated one arrives as an array and fails here.
  // No NUL either: PostgreSQL text cannot hold it.
  properties: {
    ...Object.fromEntries(AUTHORIZE_PARAMETERS.map((name) => [name, safeString(4096)])),
    [RESUME_PARAMETER]: safeString(64),
  },
} as const;

const decisionBodySchema = {
  type: 'object',
  properties: {
    request_id: safeString(64),
    csrf_token: safeString(128),
    decision: safeString(16),
  },
} as const;

// Only the page itself: errors are pages sent by sendHtml, and a schema for them would stringify objects.
const htmlResponse = { 200: { type: 'string' } } as const;

/** A 303 carrying the authorization response; never cached, never with a Referer. */
function redirect(reply: FastifyReply, location: string): FastifyReply {
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').header('referrer-policy', 'no-referrer').redirect(location, 303);
}

function badRequestPage(reply: FastifyReply, message: string): FastifyReply {
  return sendHtml(reply, 400, errorPage('This sign-in link cannot be used', message));
}

/**
 * What the consent page says about linking. A voice platform's client is named by its platform, not by
 * the name an operator gave it: Google asks that the page say the account is linked to Google (never
 * "Google Home" or "Google Assistant") and that the user authorizes Google to control their devices.
 */
function linkStatement(client: ValidAuthorizationRequest['client']) {
  if (client.voicePlatform === 'google') {
    return html`<p><strong>Your account will be linked to Google.</strong> By signing in, you are authorizing Google to control your devices.</p>`;
  }
  if (client.voicePlatform === 'alexa') {
    return html`<p><strong>Your account will be linked to Alexa.</strong> By allowing, you are authorizing Alexa to use your account as listed above.</p>`;
  }
  if (client.kind === 'voice') return html`<p><strong>Your account will be linked to ${client.name}, so you can use it with your voice assistant.</strong></p>`;
  return '';
}

function consentPage(request: ValidAuthorizationRequest, user: { email: string }, requestId: string, csrfToken: string): string {
  const { client } = request;
  const returnHost = new URL(request.redirectUri).host;
  const scopes = request.scopes.map((scope) => html`<li>${SCOPE_DESCRIPTIONS[scope] ?? scope}</li>`);
  // A self-registered client chose its own name: say so, so the name is not taken as vouched for.
  const unverified = client.registeredBy === 'dynamic';
  const marker = unverified ? ' (unverified)' : '';
  const name = client.voicePlatform === null ? client.name : VOICE_PLATFORM_RULES[client.voicePlatform].displayName;
  return renderPage(
    `Allow ${name}${marker}?`,
    html`<h1>Allow ${name}${marker} to use your account?</h1>
${unverified ? html`<p class="error"><strong>Unverified application.</strong> This application registered itself and chose the name shown; we have not checked who runs it. Only continue if you started this from an application you trust.</p>` : ''}
<p>${name} asks to:</p>
<ul>${scopes}</ul>
${linkStatement(client)}
<p class="note">Signed in as ${user.email}. Afterwards you will be sent back to ${returnHost}. You can withdraw this access at any time.</p>
<form method="post" action="/oauth/authorize/decision">
<input type="hidden" name="request_id" value="${requestId}">
<input type="hidden" name="csrf_token" value="${csrfToken}">
<div class="actions">
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</div>
</form>`,
  );
}

/**
 * The authorization endpoint (RFC 6749 section 4.1, RFC 7636, RFC 9207, RFC 9700): authorization code
 * with PKCE S256 only (omitted only by the clients mayOmitPkce names: Google's), exact redirect URIs,
 * errors the client cannot be trusted with shown as a page, login and consent as server-rendered pages
 * without JavaScript, and a 303 after the decision POST. No CORS: browsers only ever navigate here.
 * OpenID Connect's nonce, prompt and max_age apply to every client (oidc-request.ts); a first-party
 * client, or a covering grant, needs no consent page.
 */
export default async function authorize(app: FastifyInstance) {
  const { db, audit, config } = app.services;
  const context: AuthorizationContext = {
    db,
    audit,
    issuer: app.authorizationServer.issuer,
    codeLifetimeSeconds: config.lifetimes.authorizationCodeSeconds,
    clock: app.authorizationServer.tokens.clock,
  };

  const loginUrl = (returnTo: string) => `/login?${new URLSearchParams({ return_to: returnTo })}`;
  type Origin = ReturnType<typeof requestOrigin>;
  type SignedInUser = { user: UserRow; session: PmSession };

  /** A checked request and a signed-in user: a code at once when no consent is needed (first party, covering grant), else the consent page. */
  async function continueAsUser(reply: FastifyReply, request: ValidAuthorizationRequest, signedIn: SignedInUser, origin: Origin) {
    const { user, session } = signedIn;
    const location = await authorizeWithoutConsent(context, request, { userId: user.id, session }, origin);
    if (location) return redirect(reply, location);

    const { requestId, csrfToken } = await startConsent(db, request, user.id);
    // The decision POST is answered with a redirect to the client, which the form-action must allow. The
    // origin is safe to write into the policy: redirectUriProblem admits only DNS names and IP literals.
    return sendHtml(reply, 200, consentPage(request, user, requestId, csrfToken), {
      formAction: ["'self'", new URL(request.redirectUri).origin],
    });
  }

  /**
   * prompt=none (OpenID Connect Core section 3.1.2.1): a code only if neither sign-in nor consent is
   * needed, else login_required or consent_required at the redirect URI. An id_token_hint is checked
   * here (ours, expired or not) and must name the signed-in user; elsewhere it is ignored.
   */
  async function answerWithoutInteraction(reply: FastifyReply, request: ValidAuthorizationRequest, signedIn: SignedInUser | null, origin: Origin) {
    const clientId = request.client.id;
    const refuse = async (error: 'login_required' | 'consent_required' | 'invalid_request', reason: string) => {
      await recordAuthorizeRejection(audit, { clientId, reason }, signedIn?.user.id ?? null, origin);
      return redirect(reply, promptNoneFailure(request, error, context.issuer));
    };
    if (!signedIn) return refuse('login_required', 'not_signed_in');
    if (!signInServes(request, signedIn.session.authTime.getTime(), Date.now())) return refuse('login_required', 'max_age_exceeded');
    if (request.idTokenHint !== undefined) {
      const check = await verifyIdTokenHint(request.idTokenHint, app.authorizationServer.keys, {
        issuer: context.issuer,
        acceptExpiredSeconds: config.lifetimes.sessionSeconds,
        now: new Date(),
      });
      if (!check.ok) return refuse('invalid_request', `id_token_hint_${check.reason}`);
      if (check.hint.sub !== signedIn.user.id) return refuse('login_required', 'id_token_hint_other_user');
    }
    const location = await authorizeWithoutConsent(context, request, { userId: signedIn.user.id, session: signedIn.session }, origin);
    return location ? redirect(reply, location) : refuse('consent_required', 'consent_required');
  }

  app.get<{ Querystring: AuthorizeQuery & { [RESUME_PARAMETER]?: string } }>(
    '/oauth/authorize',
    {
      schema: { querystring: querystringSchema, response: htmlResponse },
      // Malformed (e.g. repeated) parameters: nothing about the request can be trusted, so no redirect.
      errorHandler: (error, _request, reply) => {
        if (isClientError(error)) return badRequestPage(reply, 'The request is malformed: each parameter may appear once.');
        throw error;
      },
    },
    async (request, reply) => {
      const origin = requestOrigin(request);
      const resumeId = request.query[RESUME_PARAMETER];
      if (resumeId !== undefined) {
        // A stored request is resumed on its own; mixing it with new parameters is not a request we sent.
        if (AUTHORIZE_PARAMETERS.some((name) => request.query[name] !== undefined)) return badRequestPage(reply, 'The request is malformed.');
        const signedIn = await cookieSession(db, config, request);
        if (!signedIn) return redirect(reply, loginUrl(request.url));
        const resumed = await resumePendingRequest(db, resumeId, signedIn.session.authTime.getTime(), Date.now());
        if (resumed.kind === 'gone') return badRequestPage(reply, 'This sign-in link has expired or was already used. Start again from the application.');
        // The application asked for a new sign-in (prompt=login, max_age) and this one began before it asked.
        if (resumed.kind === 'sign_in_again') return redirect(reply, loginUrl(request.url));
        return continueAsUser(reply, resumed.request, signedIn, origin);
      }

      const check = await checkAuthorizationRequest(db, request.query);
      if (check.kind !== 'valid') {
        if (check.rejection) {
          const user = await cookieSessionUser(db, config, request);
          await recordAuthorizeRejection(audit, check.rejection, user?.id ?? null, origin);
        }
        if (check.kind === 'page') return badRequestPage(reply, check.message);
        return redirect(reply, authorizationResponseUrl(check.redirectUri, check.params, context.issuer));
      }
      const signedIn = await cookieSession(db, config, request);
      if (check.request.prompt.includes('none')) return answerWithoutInteraction(reply, check.request, signedIn, origin);
      if (!signedIn || !signInServes(check.request, signedIn.session.authTime.getTime(), Date.now())) {
        // The request (whose state may be long) waits here; the login page gets a short return URL.
        const pendingId = await storePendingRequest(db, check.request);
        return redirect(reply, loginUrl(`/oauth/authorize?${new URLSearchParams({ [RESUME_PARAMETER]: pendingId })}`));
      }
      return continueAsUser(reply, check.request, signedIn, origin);
    },
  );

  app.post<{ Body: { request_id?: string; csrf_token?: string; decision?: string } }>(
    '/oauth/authorize/decision',
    {
      schema: { consumes: ['application/x-www-form-urlencoded'], body: decisionBodySchema, response: htmlResponse },
      errorHandler: (error, _request, reply) => {
        if (isClientError(error)) {
          return sendHtml(reply, 400, errorPage('This answer cannot be used', 'The form was malformed. Nothing was authorized.'));
        }
        throw error;
      },
    },
    async (request, reply) => {
      const body = request.body ?? {};
      const signedIn = await cookieSession(db, config, request);
      const outcome = await decideAuthorizationRequest(
        context,
        { requestId: body.request_id, csrfToken: body.csrf_token, decision: body.decision },
        signedIn ? { userId: signedIn.user.id, session: signedIn.session } : null,
        requestOrigin(request),
      );
      if (outcome.kind === 'forbidden') return sendHtml(reply, 403, errorPage('Request refused', outcome.message));
      if (outcome.kind === 'refused') return sendHtml(reply, 400, errorPage('Request refused', outcome.message));
      return redirect(reply, outcome.location);
    },
  );
}
