import type { FastifyInstance, FastifyRequest } from 'fastify';
import { deleteRoleMapping, roleMappings, setRoleMapping, type RoleMapping } from '../../../platform/sso/role-mappings';
import { ROLE_NAME_PATTERN } from '../../../platform/roles';
import { errorResponseSchema } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { signalPmRolesChanged, ssoSignalTarget } from '../../sso-session-signals';
import { requireAdminToken } from '../oauth/admin-authentication';
import { ADMIN_ACTOR, mapErrors, roleNamesSchema } from './admin-users';

export const ADMIN_ROLE_MAPPINGS_PREFIX = '/api/v1/admin/sso/role-mappings';

const mappingSchema = {
  type: 'object',
  required: ['pmRole', 'portalRoles', 'updatedAt'],
  properties: { pmRole: { type: 'string' }, portalRoles: { type: 'array', items: { type: 'string' } }, updatedAt: { type: 'string', format: 'date-time' } },
} as const;

const changeProperties = { changed: { type: 'boolean' }, usersAffected: { type: 'integer' } } as const;
const paramsSchema = { type: 'object', required: ['pmRole'], properties: { pmRole: { type: 'string', pattern: ROLE_NAME_PATTERN } } } as const;
const errorResponses = { 400: errorResponseSchema, 401: errorResponseSchema, 404: errorResponseSchema, 503: errorResponseSchema };

const mappingJson = (mapping: RoleMapping) => ({ ...mapping, updatedAt: mapping.updatedAt.toISOString() });

/**
 * The PM-role to portal-roles mapping for operators (Bearer ADMIN_API_TOKEN). A change bumps the
 * roles_version of every PM user holding the PM role, applies the new portal roles to their portal
 * accounts at once, is audited (SsoRoleMappingChange) and is told to their SSO session workflows.
 */
export default async function adminRoleMappings(app: FastifyInstance) {
  const { db, audit } = app.services;
  requireAdminToken(app);
  const by = (request: FastifyRequest) => ({ actor: ADMIN_ACTOR, origin: requestOrigin(request) });

  app.get(
    ADMIN_ROLE_MAPPINGS_PREFIX,
    {
      schema: {
        summary: 'PM roles and the portal roles each maps to',
        response: { 200: { type: 'object', required: ['mappings'], properties: { mappings: { type: 'array', items: mappingSchema } } }, ...errorResponses },
      },
    },
    async () => ({ mappings: (await roleMappings(db)).map(mappingJson) }),
  );

  app.put<{ Params: { pmRole: string }; Body: { portalRoles: string[] } }>(
    `${ADMIN_ROLE_MAPPINGS_PREFIX}/:pmRole`,
    {
      schema: {
        summary: 'Sets the portal roles a PM role maps to',
        params: paramsSchema,
        body: { type: 'object', required: ['portalRoles'], additionalProperties: false, properties: { portalRoles: roleNamesSchema } },
        response: { 200: { type: 'object', required: ['mapping', ...Object.keys(changeProperties)], properties: { mapping: mappingSchema, ...changeProperties } }, ...errorResponses },
      },
    },
    async (request) => {
      const outcome = await mapErrors(() => setRoleMapping(db, audit, request.params.pmRole, request.body.portalRoles, by(request)));
      await signalPmRolesChanged(ssoSignalTarget(app.services, request.log), outcome.portalPmUserIds);
      return { mapping: mappingJson(outcome.mapping), changed: outcome.changed, usersAffected: outcome.usersAffected };
    },
  );

  app.delete<{ Params: { pmRole: string } }>(
    `${ADMIN_ROLE_MAPPINGS_PREFIX}/:pmRole`,
    {
      schema: {
        summary: "Removes a PM role's mapping: the role then gives no portal role",
        params: paramsSchema,
        response: { 200: { type: 'object', required: Object.keys(changeProperties), properties: changeProperties }, ...errorResponses },
      },
    },
    async (request) => {
      const outcome = await mapErrors(() => deleteRoleMapping(db, audit, request.params.pmRole, by(request)));
      await signalPmRolesChanged(ssoSignalTarget(app.services, request.log), outcome.portalPmUserIds);
      return { changed: outcome.changed, usersAffected: outcome.usersAffected };
    },
  );
}
