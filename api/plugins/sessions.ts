import fp from 'fastify-plugin';
import cookie from '@fastify/cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { errorResponseBuilderContext } from '@fastify/rate-limit';
import type { CommonQueryMethods } from 'slonik';
import { findLiveSession, insertSession, revokeSession, type PmSession, type UserRow } from '../../db/queries/users';
import type { Config } from '../../platform/config';
import { attemptLogin, PM_USER_ACCOUNTS } from '../../platform/login';
import { hashBearerValue, randomToken } from '../../platform/secrets';
import { errorResponseSchema, HttpError } from '../errors';
import { signalPmSessionsEnded, ssoSignalTarget } from '../sso-session-signals';
import { requestOrigin } from '../request-origin';
import { safeString } from '../schemas';

export const SESSION_COOKIE = 'pm_session';

const userSchema = {
  type: 'object',
  required: ['id', 'email', 'displayName'],
  properties: { id: { type: 'string' }, email: { type: 'string' }, displayName: { type: 'string' } },
} as const;

/** The lockout settings of every password login (JSON and the HTML login page). */
export function loginSettings(config: Config) {
  return { maxFailures: config.authorizationServer.loginMaxFailures, lockoutSeconds: config.authorizationServer.loginLockoutSeconds };
}

/**
 * Per-IP limit of the password logins (JSON and the HTML page, counted per route): each attempt costs
 * an Argon2 run. The 429 is an HttpError, so the API answers `{ error: 'rate_limited', message }`.
 */
export const LOGIN_RATE_LIMIT = {
  max: 20,
  timeWindow: '1 minute',
  errorResponseBuilder: (_request: FastifyRequest, context: errorResponseBuilderContext) =>
    new HttpError(context.statusCode, 'rate_limited', `Too many login attempts; retry in ${context.after}`),
};

/** Creates a session for the user and sets the session cookie; the token is returned once and stored only as its hash. */
export async function startSession(
  db: CommonQueryMethods,
  config: Config,
  reply: FastifyReply,
  userId: string,
): Promise<{ token: string; expiresAt: Date; session: PmSession }> {
  const token = randomToken();
  const expiresAt = new Date(Date.now() + config.lifetimes.sessionSeconds * 1000);
  const session = await insertSession(db, { userId, tokenHash: hashBearerValue(token), expiresAt });
  reply.setCookie(SESSION_COOKIE, token, {
    path: '/',
    httpOnly: true,
    sameSite: 'lax',
    secure: config.http.secureCookies,
    expires: expiresAt,
  });
  return { token, expiresAt, session };
}

/** The user and session of the session cookie only (browser pages: a Bearer header is not a browser sign-in). */
export async function cookieSession(db: CommonQueryMethods, config: Config, request: FastifyRequest): Promise<{ user: UserRow; session: PmSession } | null> {
  const token = request.cookies[SESSION_COOKIE];
  return token ? findLiveSession(db, hashBearerValue(token), config.sso.sessionIdleSeconds) : null;
}

/** The user of the session cookie only. */
export async function cookieSessionUser(db: CommonQueryMethods, config: Config, request: FastifyRequest): Promise<UserRow | null> {
  return (await cookieSession(db, config, request))?.user ?? null;
}

/**
 * Revokes the session the request presents, if any: a sign-in never keeps a session that existed
 * before it (session fixation). Call it only once the login has succeeded.
 */
export async function revokePresentedSession(db: CommonQueryMethods, request: FastifyRequest): Promise<string | null> {
  const token = sessionToken(request);
  const revoked = token ? await revokeSession(db, hashBearerValue(token), 'replaced_by_login') : null;
  // Portal sessions opened from it end with it, through their SSO session workflows.
  if (revoked) await signalPmSessionsEnded(ssoSignalTarget(request.server.services, request.log), [revoked], 'revoked');
  return revoked;
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
  app.decorateRequest('pmSession', null);
  app.decorate('authenticate', async (request: FastifyRequest) => {
    const token = sessionToken(request);
    const live = token ? await findLiveSession(db, hashBearerValue(token), config.sso.sessionIdleSeconds) : null;
    request.user = live?.user ?? null;
    request.pmSession = live?.session ?? null;
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
          properties: {
            // No NUL: PostgreSQL refuses it in text, which would otherwise surface as a 500.
            email: safeString(320, { minLength: 3 }),
            password: safeString(1024, { minLength: 1 }),
          },
        },
        response: {
          200: { type: 'object', required: ['user', 'sessionToken', 'expiresAt'], properties: { user: userSchema, sessionToken: { type: 'string' }, expiresAt: { type: 'string' } } },
          401: errorResponseSchema,
          415: errorResponseSchema,
          429: errorResponseSchema,
        },
      },
      config: { rateLimit: LOGIN_RATE_LIMIT },
      // JSON only: a form-encoded login could be posted by any site, signing the victim into the attacker's account.
      preValidation: async (request) => {
        if (!request.headers['content-type']?.startsWith('application/json')) {
          throw new HttpError(415, 'unsupported_media_type', 'Send the credentials as application/json');
        }
      },
    },
    async (request, reply) => {
      const outcome = await attemptLogin(db, audit, PM_USER_ACCOUNTS, loginSettings(config), { email: request.body.email, password: request.body.password, origin: requestOrigin(request) });
      // A locked account gets the same answer as a wrong password.
      if (!outcome.ok) throw new HttpError(401, 'invalid_credentials', 'Email or password is wrong');
      const user = outcome.account;
      await revokePresentedSession(db, request);
      const { token, expiresAt } = await startSession(db, config, reply, user.id);
      return { user, sessionToken: token, expiresAt: expiresAt.toISOString() };
    },
  );

  app.post('/api/v1/auth/logout', { schema: { response: { 204: { type: 'null' } } } }, async (request, reply) => {
    const token = sessionToken(request);
    if (token) {
      const live = await findLiveSession(db, hashBearerValue(token), config.sso.sessionIdleSeconds);
      const user = live?.user;
      const revoked = await revokeSession(db, hashBearerValue(token), 'logout');
      if (user) await audit.record({ action: 'UserLogout', outcome: 'success', actor: { type: 'user', id: user.id }, userId: user.id, origin: requestOrigin(request) });
      // The portal sessions opened from this one are logged out through their SSO session workflows (back-channel logout).
      if (revoked) await signalPmSessionsEnded(ssoSignalTarget(app.services, request.log), [revoked], 'logout');
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
