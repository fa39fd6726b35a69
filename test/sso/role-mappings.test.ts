import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { adminRequest, startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows, insertPortalSession, signInPm, SSO_ENVIRONMENT } from '../helpers/sso-pm';

/**
 * The PM-role to portal-roles mapping as data (/api/v1/admin/sso/role-mappings): its seeded defaults,
 * and changes that reach the portal accounts of every PM user holding the role.
 */
describe('SSO role mappings (/api/v1/admin/sso/role-mappings)', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer(SSO_ENVIRONMENT);
  });

  afterAll(async () => {
    await server?.close();
  });

  const admin = (method: string, path = '', body?: unknown, token?: string) => adminRequest(server.url, method, `/api/v1/admin/sso/role-mappings${path}`, body, token);

  let userCount = 0;
  /** A PM user with these roles; with a portal account and a live SSO portal session when `portal` is set. */
  async function userWithRoles(roles: string[], portal: boolean) {
    const user = await server.createUser(`mapping-${(userCount += 1)}@example.com`);
    await server.db.query(sql.unsafe`UPDATE users SET roles = ${sql.array(roles, 'text')} WHERE id = ${user.id}`);
    if (!portal) return { ...user, portalUserId: undefined };
    const { sessionId } = await signInPm(server, user.email, user.password);
    const { portalUserId } = await insertPortalSession(server.db, user.id, sessionId, []);
    return { ...user, portalUserId };
  }

  const userState = (userId: string) =>
    server.db.one(sql.type(z.object({ rolesVersion: z.number(), portalRoles: z.array(z.string()).nullable() }))`
      SELECT u.roles_version AS "rolesVersion", pu.roles AS "portalRoles" FROM users u LEFT JOIN portal_users pu ON pu.pm_user_id = u.id WHERE u.id = ${userId}`);

  it('lists the seeded defaults; only with the admin token', async () => {
    const response = await admin('GET');
    expect(response.status).toBe(200);
    const { mappings } = (await response.json()) as { mappings: Array<{ pmRole: string; portalRoles: string[] }> };
    expect(mappings.map(({ pmRole, portalRoles }) => ({ pmRole, portalRoles }))).toEqual([
      { pmRole: 'agent', portalRoles: ['listing_editor'] },
      { pmRole: 'manager', portalRoles: ['listing_editor'] },
      { pmRole: 'owner', portalRoles: ['portal_admin', 'listing_editor'] },
      { pmRole: 'viewer', portalRoles: ['listing_viewer'] },
    ]);
    expect((await admin('GET', '', undefined, 'not-the-admin-token-0123456789abcdef')).status).toBe(401);
  });

  it("changes a mapping: every holder's roles_version moves on, holders with a portal account get the new roles at once, audited", async () => {
    const holderWithPortal = await userWithRoles(['agent'], true);
    const holderWithoutPortal = await userWithRoles(['agent', 'viewer'], false);
    const nonHolder = await userWithRoles(['viewer'], true);
    const before = { withPortal: await userState(holderWithPortal.id), withoutPortal: await userState(holderWithoutPortal.id), nonHolder: await userState(nonHolder.id) };

    const response = await admin('PUT', '/agent', { portalRoles: ['reports_viewer', 'listing_editor', 'reports_viewer'] });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ changed: true, usersAffected: 2, mapping: { pmRole: 'agent', portalRoles: ['listing_editor', 'reports_viewer'] } });

    expect(await userState(holderWithPortal.id)).toEqual({ rolesVersion: before.withPortal.rolesVersion + 1, portalRoles: ['listing_editor', 'reports_viewer'] });
    expect((await userState(holderWithoutPortal.id)).rolesVersion).toBe(before.withoutPortal.rolesVersion + 1);
    expect(await userState(nonHolder.id)).toEqual(before.nonHolder);
    expect((await auditRows(server.db, 'SsoRoleMappingChange')).at(-1)).toMatchObject({
      actorType: 'operator',
      actorId: 'admin-api',
      details: { pmRole: 'agent', portalRoles: ['listing_editor', 'reports_viewer'], previousPortalRoles: ['listing_editor'], usersAffected: 2 },
    });
    expect((await auditRows(server.db, 'SsoRolesApplied')).filter((row) => row.userId === holderWithPortal.id).at(-1)).toMatchObject({
      details: { roles: ['listing_editor', 'reports_viewer'], trigger: 'operator' },
    });

    // The same portal roles again: nothing changes.
    const again = await admin('PUT', '/agent', { portalRoles: ['listing_editor', 'reports_viewer'] });
    expect(await again.json()).toMatchObject({ changed: false, usersAffected: 0 });
    expect((await userState(holderWithPortal.id)).rolesVersion).toBe(before.withPortal.rolesVersion + 1);
  });

  it('creates a mapping for a new PM role, and deleting it takes its portal roles away from its holders', async () => {
    const auditor = await userWithRoles(['auditor', 'viewer'], true);
    const created = await admin('PUT', '/auditor', { portalRoles: ['reports_viewer'] });
    expect(await created.json()).toMatchObject({ changed: true, usersAffected: 1, mapping: { pmRole: 'auditor', portalRoles: ['reports_viewer'] } });
    expect((await userState(auditor.id)).portalRoles).toEqual(['listing_viewer', 'reports_viewer']);

    const deleted = await admin('DELETE', '/auditor');
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toEqual({ changed: true, usersAffected: 1 });
    expect((await userState(auditor.id)).portalRoles).toEqual(['listing_viewer']);
    expect((await auditRows(server.db, 'SsoRoleMappingChange')).at(-1)).toMatchObject({ details: { pmRole: 'auditor', portalRoles: null, previousPortalRoles: ['reports_viewer'] } });

    const again = await admin('DELETE', '/auditor');
    expect(again.status).toBe(404);
  });

  it('refuses malformed role names with 400 and changes nothing', async () => {
    const before = await (await admin('GET')).json();
    for (const [path, body] of [
      ['/Owner', { portalRoles: ['x'] }],
      ['/owner', { portalRoles: ['Portal Admin'] }],
      ['/owner', {}],
    ] as const) {
      const response = await admin('PUT', path, body);
      expect(response.status, `${path} ${JSON.stringify(body)}`).toBe(400);
    }
    expect((await admin('DELETE', '/Not_A_Role')).status).toBe(400);
    expect(await (await admin('GET')).json()).toEqual(before);
  });
});
