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
import { answerOAuthErrors } from './oauth-errors';

/**
 * POST /oauth/revoke (RFC 7009) for authenticated clients (public clients identify themselves by
 * client_id). Always 200 with an empty body once the client is authenticated, whether the token
 * was revoked, unknown or another client's (left alone).
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
      await revoker.revoke(client, parameters.token, parameters.token_type_hint, requestOrigin(request));
      return reply.code(200).send();
    },
  );
}
