import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OAuthError, oauthErrorSchema } from '../../../platform/oauth-server/errors';
import { issuePortalSsoToken, portalSsoEnabled } from '../../../platform/sso/sso-token-issuance';
import { ISSUED_TOKEN_TYPE_JWT, TOKEN_EXCHANGE_GRANT_TYPE } from '../../../platform/sso/sso-tokens';
import { HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { answerOAuthErrors } from '../oauth/oauth-errors';
import { portalSsoTokenIssuer, ssoTokenRateLimit } from './sso-token-requests';

interface TokenExchangeBody {
  grant_type?: string;
  audience?: string;
  requested_token_type?: string;
  resource?: string;
  scope?: string;
  subject_token?: string;
  subject_token_type?: string;
  actor_token?: string;
  actor_token_type?: string;
}

const field = safeString(4096);

/** RFC 8693 section 2.2.1. */
const tokenExchangeResponseSchema = {
  type: 'object',
  required: ['access_token', 'issued_token_type', 'token_type', 'expires_in'],
  properties: {
    access_token: { type: 'string' },
    issued_token_type: { type: 'string' },
    token_type: { type: 'string' },
    expires_in: { type: 'integer' },
  },
} as const;

/** Only the portal is a target; `resource`, when sent, must name the portal itself. */
function checkTarget(body: TokenExchangeBody, portal: { clientId: string; publicUrl: string }): void {
  if (body.audience === undefined) throw new OAuthError('invalid_request', `audience is required: ${portal.clientId}, the Reality Portal`);
  if (body.audience !== portal.clientId) throw new OAuthError('invalid_target', `SSO tokens are issued only for the Reality Portal (audience ${portal.clientId})`);
  if (body.resource !== undefined && (!URL.canParse(body.resource) || new URL(body.resource).href !== new URL(portal.publicUrl).href)) {
    throw new OAuthError('invalid_target', `resource must be the Reality Portal (${portal.publicUrl}) or omitted`);
  }
}

/**
 * POST /api/v1/sso/token: the one-time SSO token of the signed-in PM user (session cookie or Bearer
 * session token) for the Reality Portal, in the shape of an RFC 8693 token exchange (JSON or form body).
 * Differences from RFC 8693, on purpose: the PM session is the subject, so subject_token and actor_token
 * are refused rather than required, and the only audience is the portal's client id. Errors are RFC 6749
 * section 5.2's (`invalid_target` for any other audience, section 2.2.2); 404 while single sign-on is not
 * configured (REALITY_OIDC_CLIENT_SECRET unset). Limited to SSO_TOKEN_REQUESTS_PER_MINUTE per user.
 */
export default async function tokenExchange(app: FastifyInstance) {
  answerOAuthErrors(app);
  const { config } = app.services;
  const { portal } = config.sso;
  const issuer = portalSsoTokenIssuer(app);

  const requireSignedIn = async (request: FastifyRequest) => {
    if (!portalSsoEnabled(config.sso)) {
      throw new OAuthError('invalid_target', 'single sign-on into the Reality Portal is not configured on this server', 404);
    }
    try {
      await app.authenticate(request);
    } catch (error) {
      if (error instanceof HttpError && error.statusCode === 401) throw new OAuthError('invalid_token', 'Sign in to the PM app first: no valid session', 401);
      throw error;
    }
  };

  app.post<{ Body: TokenExchangeBody }>(
    '/api/v1/sso/token',
    {
      preHandler: requireSignedIn,
      config: { rateLimit: ssoTokenRateLimit(config) },
      schema: {
        summary: 'One-time SSO token for the Reality Portal (RFC 8693 token exchange shape)',
        consumes: ['application/json', 'application/x-www-form-urlencoded'],
        body: {
          type: 'object',
          properties: {
            grant_type: field,
            audience: field,
            requested_token_type: field,
            resource: field,
            scope: field,
            subject_token: field,
            subject_token_type: field,
            actor_token: field,
            actor_token_type: field,
          },
        },
        response: { 200: tokenExchangeResponseSchema, '4xx': oauthErrorSchema, '5xx': oauthErrorSchema },
      },
    },
    async (request) => {
      const body = request.body ?? {};
      if (body.grant_type === undefined) throw new OAuthError('invalid_request', 'grant_type is required');
      if (body.grant_type !== TOKEN_EXCHANGE_GRANT_TYPE) throw new OAuthError('unsupported_grant_type', `grant_type must be ${TOKEN_EXCHANGE_GRANT_TYPE}`);
      if (body.subject_token !== undefined || body.subject_token_type !== undefined || body.actor_token !== undefined || body.actor_token_type !== undefined) {
        throw new OAuthError('invalid_request', 'subject_token and actor_token are not accepted: the signed-in PM session is the subject');
      }
      checkTarget(body, portal);
      if (body.requested_token_type !== undefined && body.requested_token_type !== ISSUED_TOKEN_TYPE_JWT) {
        throw new OAuthError('invalid_request', `requested_token_type must be ${ISSUED_TOKEN_TYPE_JWT} or omitted`);
      }
      if (body.scope !== undefined) throw new OAuthError('invalid_scope', 'the SSO token carries no scope: omit it');
      const { token, expiresInSeconds } = await issuePortalSsoToken(
        issuer,
        { userId: request.user!.id, sessionId: request.pmSession!.id, origin: requestOrigin(request) },
        'token_exchange',
      );
      return { access_token: token, issued_token_type: ISSUED_TOKEN_TYPE_JWT, token_type: 'N_A', expires_in: expiresInSeconds };
    },
  );
}
