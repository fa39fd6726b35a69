import type { FastifyInstance } from 'fastify';
import { OAuthError, oauthErrorSchema } from '../../../platform/oauth-server/errors';
import { SigningKeys } from '../../../platform/oauth-server/signing-keys';
import { receivePortalLogoutToken, type PortalLogoutReceiver } from '../../../platform/sso/portal-logout-receiver';
import { requestOrigin } from '../../request-origin';
import { signalPmSessionsEnded, ssoSignalTarget } from '../../sso-session-signals';
import { CLIENT_REQUEST_BODY_LIMIT, requireFormParameters, stringField, type FormParameters } from '../oauth/client-request';
import { answerOAuthErrors } from '../oauth/oauth-errors';

/**
 * POST /oauth/backchannel-logout: the portal's logout tokens (OpenID Connect Back-Channel Logout 1.0,
 * here with the portal as the sender and the api-server as the receiver). Form-encoded `logout_token`.
 * Answers (section 2.8): 200 when the named PM sessions have ended (also when there was none left),
 * 400 `{ error: 'invalid_request', error_description }` for a token that fails validation or was
 * received before, 503 when the database could not answer (the sender retries). Never cached.
 *
 * After the commit, the SSO session workflows of the other live portal sessions opened from the ended
 * PM sessions are told (pmSessionEnded, reason logout), so they end within seconds rather than at the
 * portal's next request. The workflow that sent the token is not among them: its portal session ended
 * before it sent, and a workflow already ending ignores a later end.
 */
export default async function backchannelLogout(app: FastifyInstance) {
  answerOAuthErrors(app);
  const { db, audit, crypto, config } = app.services;
  const receiver: PortalLogoutReceiver = {
    db,
    audit,
    portalKeys: new SigningKeys(db, crypto, config.authorizationServer.signingKeyGraceSeconds, 'reality-server'),
    portalIssuer: config.sso.portal.publicUrl,
    portalClientId: config.sso.portal.clientId,
    audience: app.authorizationServer.issuer,
    logoutTokenSeconds: config.sso.logoutTokenSeconds,
    clock: app.authorizationServer.tokens.clock,
  };

  app.post<{ Body: FormParameters }>(
    '/oauth/backchannel-logout',
    {
      bodyLimit: CLIENT_REQUEST_BODY_LIMIT,
      config: { rateLimit: { max: config.authorizationServer.tokenRequestsPerMinute, timeWindow: '1 minute' } },
      preValidation: requireFormParameters,
      schema: {
        summary: "Receives the Reality Portal's logout tokens (Back-Channel Logout 1.0) and ends the PM sessions they name",
        consumes: ['application/x-www-form-urlencoded'],
        body: { type: 'object', properties: { logout_token: stringField(16_384) } },
        response: { 200: { type: 'object', additionalProperties: false, properties: {} }, '4xx': oauthErrorSchema, '5xx': oauthErrorSchema },
      },
    },
    async (request) => {
      const token = request.body.logout_token;
      if (token === undefined) throw new OAuthError('invalid_request', 'logout_token is required');
      const outcome = await receivePortalLogoutToken(receiver, token, requestOrigin(request));
      if (!outcome.ok) throw new OAuthError('invalid_request', outcome.description);
      await signalPmSessionsEnded(ssoSignalTarget(app.services, request.log), outcome.endedPmSessionIds, 'logout');
      return {};
    },
  );
}
