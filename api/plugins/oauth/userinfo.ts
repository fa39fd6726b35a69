import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { oauthErrorSchema } from '../../../platform/oauth-server/errors';
import { userinfoFor } from '../../../platform/oauth-server/userinfo';
import { answerOAuthErrors } from './oauth-errors';

export const USERINFO_PATH = '/oauth/userinfo';

const userinfoResponseSchema = {
  type: 'object',
  required: ['sub'],
  properties: {
    sub: { type: 'string' },
    name: { type: 'string' },
    email: { type: 'string' },
    email_verified: { type: 'boolean' },
  },
} as const;

/** The value of a Bearer Authorization header (RFC 6750 section 2.1; the scheme name is case-insensitive). */
function bearerToken(request: FastifyRequest): string | undefined {
  const match = /^bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(request.headers.authorization ?? '');
  return match?.[1];
}

/** RFC 6750 section 3: the challenge names the error only when a token was presented. */
function challenge(reply: FastifyReply, status: 401 | 403, error: 'invalid_token' | 'insufficient_scope' | undefined, description: string) {
  const parameters = ['realm="oauth"', ...(error ? [`error="${error}"`, `error_description="${description}"`] : []), ...(error === 'insufficient_scope' ? ['scope="openid"'] : [])];
  return reply
    .code(status)
    .header('www-authenticate', `Bearer ${parameters.join(', ')}`)
    .send({ error: error ?? 'invalid_token', error_description: description });
}

/**
 * OpenID Connect Core 1.0 section 5.3: `GET` and `POST /oauth/userinfo` with the access token in the
 * Authorization header (only there: a token in a URL or form ends up in logs). Errors per RFC 6750:
 * 401 invalid_token (unknown, expired, revoked, or its user disabled), 403 insufficient_scope without
 * `openid`, each with WWW-Authenticate. Claims by scope (platform/oauth-server/userinfo.ts).
 */
export default async function userinfo(app: FastifyInstance) {
  answerOAuthErrors(app);
  const { db } = app.services;
  const { tokens } = app.authorizationServer;

  const answer = async (request: FastifyRequest, reply: FastifyReply) => {
    const token = bearerToken(request);
    if (token === undefined) return challenge(reply, 401, undefined, 'a Bearer access token is required');
    const outcome = await userinfoFor(db, tokens, token);
    if (!outcome.ok) return challenge(reply, outcome.error === 'invalid_token' ? 401 : 403, outcome.error, outcome.description);
    return reply.send(outcome.claims);
  };

  const schema = { response: { 200: userinfoResponseSchema, '4xx': oauthErrorSchema, '5xx': oauthErrorSchema } };
  app.get(USERINFO_PATH, { schema }, answer);
  app.post(USERINFO_PATH, { schema }, answer);
}
