import fp from 'fastify-plugin';
import cookie from '@fastify/cookie';
import type { FastifyRequest } from 'fastify';
import { findUserBySession, insertSession, revokeSession } from '../../db/queries/users';
import { hashBearerValue, randomToken } from '../../platform/secrets';
import { verifyUserPassword } from '../../platform/users';
import { errorResponseSchema, HttpError } from '../errors';

export const SESSION_COOKIE = 'pm_session';

const userSchema = {
  type: 'object',
  required: ['id', 'email', 'displayName'],
  properties: { id: { type: 'string' }, email: { type: 'string' }, displayName: { type: 'string' } },
} as const;

function origin(request: FastifyRequest) {
  return { ip: request.ip, userAgent: request.headers['user-agent'] ?? '' };
}

/** The session token comes from the cookie (browsers) or an `Authorization: Bearer` header (API consumers). */
function sessionToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice('Bearer '.length).trim() || undefined;
  return request.cookies[SESSION_COOKIE];
}

/**
 * PM users sign in with email and password and get a session; connect flows belong to that user.
 * Exposes `app.authenticate` as a preHandler for routes that need a signed-in user.
 */
export default fp(async function sessions(app) {
  const { db, audit, config } = app.services;
  await app.register(cookie);
  app.decorateRequest('user', null);
  app.decorate('authenticate', async (request: FastifyRequest) => {
    const token = sessionToken(request);
    request.user = token ? await findUserBySession(db, hashBearerValue(token)) : null;
    if (!request.user) throw new HttpError(401, 'unauthenticated', 'Sign in first: no valid session');
  });

  app.post<{ Body: { email: string; password: string } }>(
    '/api/v1/auth/login',
    {
      schema: {
        body: {
          type: 'object',
          required: ['email', 'password'],
          additionalProperties: false,
          properties: { email: { type: 'string', minLength: 3, maxLength: 320 }, password: { type: 'string', minLength: 1, maxLength: 1024 } },
        },
        response: {
          200: { type: 'object', required: ['user', 'sessionToken', 'expiresAt'], properties: { user: userSchema, sessionToken: { type: 'string' }, expiresAt: { type: 'string' } } },
          401: errorResponseSchema,
        },
      },
    },
    async (request, reply) => {
      const user = await verifyUserPassword(db, request.body.email, request.body.password);
      if (!user) {
        await audit.record({ action: 'UserLoginFailed', outcome: 'failure', actor: { type: 'user' }, origin: origin(request), details: { email: request.body.email } });
        throw new HttpError(401, 'invalid_credentials', 'Email or password is wrong');
      }
      const token = randomToken();
      const expiresAt = new Date(Date.now() + config.lifetimes.sessionSeconds * 1000);
      await insertSession(db, { userId: user.id, tokenHash: hashBearerValue(token), expiresAt });
      await audit.record({ action: 'UserLogin', outcome: 'success', actor: { type: 'user', id: user.id }, userId: user.id, origin: origin(request) });
      reply.setCookie(SESSION_COOKIE, token, {
        path: '/',
        httpOnly: true,
        sameSite: 'lax',
        secure: config.http.secureCookies,
        expires: expiresAt,
      });
      return { user, sessionToken: token, expiresAt: expiresAt.toISOString() };
    },
  );

  app.post('/api/v1/auth/logout', { schema: { response: { 204: { type: 'null' } } } }, async (request, reply) => {
    const token = sessionToken(request);
    if (token) {
      const user = await findUserBySession(db, hashBearerValue(token));
      await revokeSession(db, hashBearerValue(token));
      if (user) await audit.record({ action: 'UserLogout', outcome: 'success', actor: { type: 'user', id: user.id }, userId: user.id, origin: origin(request) });
    }
    reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return reply.code(204).send();
  });

  app.get(
    '/api/v1/auth/me',
    { preHandler: app.authenticate, schema: { response: { 200: { type: 'object', required: ['user'], properties: { user: userSchema } }, 401: errorResponseSchema } } },
    async (request) => ({ user: request.user! }),
  );
});
