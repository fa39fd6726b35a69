import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { redeemSsoToken, type SsoRedemption, type SsoRedemptionRejection } from '../../../platform/sso/sso-redemption';
import { auditSsoRejection } from '../../../platform/sso/portal-sign-in';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { htmlErrorHandler, sendProblemPage } from '../pages';
import { jsonTransientFaultHandler } from '../transient-faults';
import { setPortalSessionCookie } from './portal-sessions';

/** What the user reads when the PM app's sign-in link did not open the portal, and the status it comes with. */
const REJECTIONS: Record<SsoRedemptionRejection, { status: 400 | 401; message: string }> = {
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

/**
 * Redemption of the PM app's one-time SSO token ("Open Reality Portal"): the browser arrives at
 * GET /sso/redeem?sso_token=… (and is sent on to the portal's page), an API consumer posts the token to
 * POST /api/v1/sso/redeem. Both open a portal session (cookie; the API also answers its token) and
 * start the session's SSO session workflow.
 */
export default async function redeem(app: FastifyInstance) {
  const { db, audit, config, apiServerKeys, clock, workflows } = app.portal;
  const context = {
    db,
    audit,
    keys: apiServerKeys,
    now: clock,
    issuer: config.authorizationServer.issuer,
    clientId: config.sso.portal.clientId,
    settings: { portalSessionSeconds: config.sso.portalSessionSeconds, idleSeconds: config.sso.sessionIdleSeconds },
  };

  const redeemFor = async (request: FastifyRequest, reply: FastifyReply, token: string | undefined): Promise<SsoRedemption> => {
    if (!token) {
      await auditSsoRejection(audit, { method: 'sso_token', reason: 'malformed', clientId: context.clientId, origin: requestOrigin(request) });
      return { ok: false, reason: 'malformed' };
    }
    const redemption = await redeemSsoToken(context, token, requestOrigin(request));
    if (redemption.ok) {
      const { session, pmUserId, pmSessionId } = redemption;
      setPortalSessionCookie(reply, config, session.token, session.expiresAt);
      void workflows.ensureStarted({ id: session.id, pmSessionId, pmUserId, expiresAt: session.expiresAt }, request.log);
    }
    return redemption;
  };

  app.get<{ Querystring: { sso_token?: string } }>(
    '/sso/redeem',
    {
      schema: { querystring: { type: 'object', properties: { sso_token: SSO_TOKEN } }, response: { '4xx': { type: 'string' }, '5xx': { type: 'string' } } },
      errorHandler: htmlErrorHandler,
    },
    async (request, reply) => {
      const redemption = await redeemFor(request, reply, request.query.sso_token);
      if (!redemption.ok) {
        const { status, message } = REJECTIONS[redemption.reason];
        return sendProblemPage(reply, status, 'Could not open the Reality Portal', message);
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
      const redemption = await redeemFor(request, reply, request.body.sso_token);
      if (!redemption.ok) {
        const { status, message } = REJECTIONS[redemption.reason];
        throw new HttpError(status, redemption.reason, message);
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
