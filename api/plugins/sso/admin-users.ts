import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuditEntry } from '../../../platform/audit';
import { MAX_ROLES, ROLE_NAME_PATTERN } from '../../../platform/roles';
import { disableUser, enableUser, findUserView, setUserRoles, SsoAdministrationError, type AdminUserView } from '../../../platform/sso/user-administration';
import { UUID } from '../../../platform/uuid';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { signalPmRolesChanged, signalPmUserDisabled, ssoSignalTarget } from '../../sso-session-signals';
import { requireAdminToken } from '../oauth/admin-authentication';

export const ADMIN_USERS_PREFIX = '/api/v1/admin/users';
export const ADMIN_ACTOR: AuditEntry['actor'] = { type: 'operator', id: 'admin-api' };

export const roleNamesSchema = { type: 'array', maxItems: MAX_ROLES, items: { type: 'string', pattern: ROLE_NAME_PATTERN } } as const;

const adminUserSchema = {
  type: 'object',
  required: ['id', 'email', 'displayName', 'roles', 'rolesVersion', 'disabledAt', 'portalAccount'],
  properties: {
    id: { type: 'string' },
    email: { type: 'string' },
    displayName: { type: 'string' },
    roles: { type: 'array', items: { type: 'string' } },
    rolesVersion: { type: 'integer' },
    disabledAt: { type: ['string', 'null'], format: 'date-time' },
    portalAccount: {
      type: ['object', 'null'],
      required: ['id', 'roles'],
      properties: { id: { type: 'string' }, roles: { type: 'array', items: { type: 'string' } } },
    },
  },
} as const;

const changeSchema = (extra: Record<string, { type: string }> = {}) =>
  ({
    type: 'object',
    required: ['user', 'changed', ...Object.keys(extra)],
    properties: { user: adminUserSchema, changed: { type: 'boolean' }, ...extra },
  }) as const;

const paramsSchema = { type: 'object', required: ['userId'], properties: { userId: safeString(64) } } as const;
const errorResponses = { 400: errorResponseSchema, 401: errorResponseSchema, 404: errorResponseSchema, 503: errorResponseSchema };

function userJson(user: AdminUserView) {
  return { ...user, disabledAt: user.disabledAt?.toISOString() ?? null };
}

/** An operator's impossible change as the API's 404 or 400. */
export async function mapErrors<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof SsoAdministrationError) throw new HttpError(error.reason === 'not_found' ? 404 : 400, error.reason, error.message);
    throw error;
  }
}

/**
 * PM users for operators (Bearer ADMIN_API_TOKEN): read a user with their roles, disablement and portal
 * account; replace their roles; disable and enable them. Each change is audited and told to the user's
 * SSO session workflows (which also follow on their own: every portal request re-checks the PM side).
 */
export default async function adminUsers(app: FastifyInstance) {
  const { db, audit } = app.services;
  requireAdminToken(app);

  const userIdOf = (request: FastifyRequest<{ Params: { userId: string } }>) => {
    if (!UUID.test(request.params.userId)) throw new HttpError(404, 'not_found', `no PM user ${request.params.userId}`);
    return request.params.userId;
  };
  const by = (request: FastifyRequest) => ({ actor: ADMIN_ACTOR, origin: requestOrigin(request) });
  const signalTarget = (request: FastifyRequest) => ssoSignalTarget(app.services, request.log);

  app.get<{ Params: { userId: string } }>(
    `${ADMIN_USERS_PREFIX}/:userId`,
    { schema: { summary: "A PM user's roles, disablement and portal account", params: paramsSchema, response: { 200: adminUserSchema, ...errorResponses } } },
    async (request) => {
      const user = await findUserView(db, userIdOf(request));
      if (!user) throw new HttpError(404, 'not_found', `no PM user ${request.params.userId}`);
      return userJson(user);
    },
  );

  app.put<{ Params: { userId: string }; Body: { roles: string[] } }>(
    `${ADMIN_USERS_PREFIX}/:userId/roles`,
    {
      schema: {
        summary: "Replaces a PM user's roles (mapped onto portal roles)",
        params: paramsSchema,
        body: { type: 'object', required: ['roles'], additionalProperties: false, properties: { roles: roleNamesSchema } },
        response: { 200: changeSchema(), ...errorResponses },
      },
    },
    async (request) => {
      const { user, changed } = await mapErrors(() => setUserRoles(db, audit, userIdOf(request), request.body.roles, by(request)));
      if (changed) await signalPmRolesChanged(signalTarget(request), [user.id]);
      return { user: userJson(user), changed };
    },
  );

  app.post<{ Params: { userId: string } }>(
    `${ADMIN_USERS_PREFIX}/:userId/disable`,
    {
      schema: {
        summary: 'Disables a PM user: no sign-in, every PM and portal session ends, OAuth tokens stop working',
        params: paramsSchema,
        response: { 200: changeSchema({ pmSessionsEnded: { type: 'integer' }, portalSessionsEnded: { type: 'integer' } }), ...errorResponses },
      },
    },
    async (request) => {
      const outcome = await mapErrors(() => disableUser(db, audit, userIdOf(request), by(request)));
      await signalPmUserDisabled(signalTarget(request), outcome.user.id, outcome.endedPortalSessionIds);
      return {
        user: userJson(outcome.user),
        changed: outcome.changed,
        pmSessionsEnded: outcome.endedPmSessionIds.length,
        portalSessionsEnded: outcome.endedPortalSessionIds.length,
      };
    },
  );

  app.post<{ Params: { userId: string } }>(
    `${ADMIN_USERS_PREFIX}/:userId/enable`,
    { schema: { summary: 'Lets a disabled PM user sign in again', params: paramsSchema, response: { 200: changeSchema(), ...errorResponses } } },
    async (request) => {
      const { user, changed } = await mapErrors(() => enableUser(db, audit, userIdOf(request), by(request)));
      return { user: userJson(user), changed };
    },
  );
}
