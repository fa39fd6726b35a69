import type { FastifyInstance } from 'fastify';
import { requestOrigin } from '../../request-origin';
import { OAuthError, oauthErrorSchema } from '../../../platform/oauth-server/errors';
import { TokenIntrospection } from '../../../platform/oauth-server/introspection';
import {
  authenticateCaller,
  CLIENT_REQUEST_BODY_LIMIT,
  clientRateLimitKey,
  requireFormParameters,
  tokenParametersSchema,
  type FormParameters,
} from './client-request';
import { answerOAuthErrors } from './oauth-errors';

const introspectionResponseSchema = {
  type: 'object',
  required: ['active'],
  properties: {
    active: { type: 'boolean' },
    scope: { type: 'string' },
    client_id: { type: 'string' },
    sub: { type: 'string' },
    aud: { type: 'string' },
    iss: { type: 'string' },
    exp: { type: 'integer' },
    iat: { type: 'integer' },
    jti: { type: 'string' },
    token_type: { type: 'string' },
  },
} as const;

/**
 * POST /oauth/introspect (RFC 7662) for authenticated confidential clients. A token is active only
 * for the client it was issued to; anything else, including tokens we never issued, is
 * `{ "active": false }`. Token state is never cached: a revocation is seen by the next request.
 */
export default async function introspection(app: FastifyInstance) {
  answerOAuthErrors(app);
  const { tokens, issuer } = app.authorizationServer;
  const introspector = new TokenIntrospection(app.services.db, tokens, issuer, app.services.audit);

  app.post<{ Body: FormParameters }>(
    '/oauth/introspect',
    {
      bodyLimit: CLIENT_REQUEST_BODY_LIMIT,
      config: { rateLimit: { max: 600, timeWindow: '1 minute', hook: 'preHandler', keyGenerator: clientRateLimitKey } },
      preValidation: requireFormParameters,
      schema: {
        consumes: ['application/x-www-form-urlencoded'],
        body: tokenParametersSchema,
        response: { 200: introspectionResponseSchema, '4xx': oauthErrorSchema, '5xx': oauthErrorSchema },
      },
    },
    async (request) => {
      const parameters = request.body;
      const client = await authenticateCaller(app, request, parameters, 'introspection', { requireSecret: true });
      if (parameters.token === undefined) throw new OAuthError('invalid_request', 'token is required');
      return introspector.introspect(client, parameters.token, parameters.token_type_hint, requestOrigin(request));
    },
  );
}
