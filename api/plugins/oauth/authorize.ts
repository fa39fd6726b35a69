import type { FastifyInstance, FastifyReply } from 'fastify';
import { errorPage, html, renderPage, sendHtml } from '../../../platform/html';
import {
  authorizationResponseUrl,
  authorizeWithExistingGrant,
  checkAuthorizationRequest,
  decideAuthorizationRequest,
  startConsent,
  type AuthorizationContext,
  type AuthorizeQuery,
  type ValidAuthorizationRequest,
} from '../../../platform/oauth-server/authorization-requests';
import { SCOPE_DESCRIPTIONS } from '../../../platform/oauth-server/scopes';
import { cookieSessionUser } from '../sessions';
import { requestOrigin } from '../../request-origin';

const AUTHORIZE_PARAMETERS = ['response_type', 'client_id', 'redirect_uri', 'scope', 'state', 'code_challenge', 'code_challenge_method'] as const;

const querystringSchema = {
  type: 'object',
  // Each parameter at most once (RFC 6749 section 3.1): a repeated one arrives as an array and fails here.
  properties: Object.fromEntries(AUTHORIZE_PARAMETERS.map((name) => [name, { type: 'string', maxLength: 4096 }])),
} as const;

const decisionBodySchema = {
  type: 'object',
  properties: {
    request_id: { type: 'string', maxLength: 64 },
    csrf_token: { type: 'string', maxLength: 128 },
    decision: { type: 'string', maxLength: 16 },
  },
} as const;

const htmlResponse = { 'default': { type: 'string' } } as const;

/** A 303 carrying the authorization response; never cached, never with a Referer. */
function redirect(reply: FastifyReply, location: string): FastifyReply {
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').header('referrer-policy', 'no-referrer').redirect(location, 303);
}

function badRequestPage(reply: FastifyReply, message: string): FastifyReply {
  return sendHtml(reply, 400, errorPage('This sign-in link cannot be used', message));
}

function consentPage(request: ValidAuthorizationRequest, user: { email: string }, requestId: string, csrfToken: string): string {
  const { client } = request;
  const returnHost = new URL(request.redirectUri).host;
  const scopes = request.scopes.map((scope) => html`<li>${SCOPE_DESCRIPTIONS[scope] ?? scope}</li>`);
  return renderPage(
    `Allow ${client.name}?`,
    html`<h1>Allow ${client.name} to use your account?</h1>
<p>${client.name} asks to:</p>
<ul>${scopes}</ul>
${client.kind === 'voice' ? html`<p><strong>Your account will be linked to ${client.name}, so you can use it with your voice assistant.</strong></p>` : ''}
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
 * with PKCE S256 only, exact redirect URIs, errors the client cannot be trusted with shown as a page,
 * login and consent as server-rendered pages without JavaScript, and a 303 after the decision POST.
 * No CORS: browsers only ever navigate here.
 */
export default async function authorize(app: FastifyInstance) {
  const { db, audit, config } = app.services;
  const context: AuthorizationContext = {
    db,
    audit,
    issuer: app.authorizationServer.issuer,
    codeLifetimeSeconds: config.lifetimes.authorizationCodeSeconds,
  };

  app.get<{ Querystring: AuthorizeQuery }>(
    '/oauth/authorize',
    {
      schema: { querystring: querystringSchema, response: htmlResponse },
      // Malformed (e.g. repeated) parameters: nothing about the request can be trusted, so no redirect.
      errorHandler: (error, _request, reply) => {
        if ((error as { validation?: unknown }).validation) return badRequestPage(reply, 'The request is malformed: each parameter may appear once.');
        throw error;
      },
    },
    async (request, reply) => {
      const check = await checkAuthorizationRequest(db, request.query);
      if (check.kind === 'page') return badRequestPage(reply, check.message);
      if (check.kind === 'redirect') return redirect(reply, authorizationResponseUrl(check.redirectUri, check.params, context.issuer));

      const user = await cookieSessionUser(db, request);
      if (!user) return redirect(reply, `/login?${new URLSearchParams({ return_to: request.url })}`);

      const location = await authorizeWithExistingGrant(context, check.request, user.id, requestOrigin(request));
      if (location) return redirect(reply, location);

      const { requestId, csrfToken } = await startConsent(db, check.request, user.id);
      // The decision POST is answered with a redirect to the client, which the form-action must allow.
      return sendHtml(reply, 200, consentPage(check.request, user, requestId, csrfToken), {
        formAction: ["'self'", new URL(check.request.redirectUri).origin],
      });
    },
  );

  app.post<{ Body: { request_id?: string; csrf_token?: string; decision?: string } }>(
    '/oauth/authorize/decision',
    {
      schema: { body: decisionBodySchema, response: htmlResponse },
      errorHandler: (error, _request, reply) => {
        const status = (error as { statusCode?: number }).statusCode;
        if ((error as { validation?: unknown }).validation || (status && status >= 400 && status < 500)) {
          return sendHtml(reply, 400, errorPage('This answer cannot be used', 'The form was malformed. Nothing was authorized.'));
        }
        throw error;
      },
    },
    async (request, reply) => {
      const body = request.body ?? {};
      const user = await cookieSessionUser(db, request);
      const outcome = await decideAuthorizationRequest(
        context,
        { requestId: body.request_id, csrfToken: body.csrf_token, decision: body.decision },
        user?.id ?? null,
        requestOrigin(request),
      );
      if (outcome.kind === 'forbidden') return sendHtml(reply, 403, errorPage('Request refused', outcome.message));
      if (outcome.kind === 'refused') return sendHtml(reply, 400, errorPage('Request refused', outcome.message));
      return redirect(reply, outcome.location);
    },
  );
}
