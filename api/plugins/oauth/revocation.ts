import { requestOrigin } from '../../request-origin';
import type { FastifyInstance } from 'fastify';
import { OAuthError, oauthErrorSchema } from '../../../platform/oauth-server/errors';
import { TokenRevocation } from '../../../platform/oauth-server/revocation';
import {
  authenticateCaller,
  CLIENT_REQUEST_BODY_LIMIT,
  clientRateLimitKey,
  requireFormParameters,
  tokenParametersSchema,
  type FormParameters,
} from './client-request';
import { requestVoiceDeviceUnlink } from '../voice/unlink';
import { answerOAuthErrors } from './oauth-errors';

/**
 * POST /oauth/revoke (RFC 7009) for authenticated clients (public clients identify themselves by
 * client_id). Always 200 with an empty body once the client is authenticated, whether the token
 * was revoked, unknown or another client's (left alone). A voice platform revoking its refresh
 * token unlinks the device: its workflow is told to end the platform's side too.
 */
export default async function revocation(app: FastifyInstance) {
  answerOAuthErrors(app);
  const revoker = new TokenRevocation(app.services.db, app.authorizationServer.tokens, app.services.audit);

  app.post<{ Body: FormParameters }>(
    '/oauth/revoke',
    {
      bodyLimit: CLIENT_REQUEST_BODY_LIMIT,
      config: { rateLimit: { max: 600, timeWindow: '1 minute', hook: 'preHandler', keyGenerator: clientRateLimitKey } },
      preValidation: requireFormParameters,
      schema: {
        consumes: ['application/x-www-form-urlencoded'],
        body: tokenParametersSchema,
        response: { '4xx': oauthErrorSchema, '5xx': oauthErrorSchema },
      },
    },
    async (request, reply) => {
      const parameters = request.body;
      const client = await authenticateCaller(app, request, parameters, 'revocation');
      if (parameters.token === undefined) throw new OAuthError('invalid_request', 'token is required');
      const origin = requestOrigin(request);
      const { unlinkedVoiceDevice: device } = await revoker.revoke(client, parameters.token, parameters.token_type_hint, origin);
      if (device) {
        try {
          await requestVoiceDeviceUnlink(app.services, device, { direction: 'tokens_revoked', requestedBy: { type: 'platform', id: device.platform }, origin });
        } catch (error) {
          // The device's tokens are revoked and its link ended on our side; its workflow finds that on its next look at the device.
          request.log.warn({ err: error, deviceId: device.id }, 'the voice device workflow could not be told of the revoked refresh token');
        }
      }
      return reply.code(200).send();
    },
  );
}
