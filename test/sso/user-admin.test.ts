import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { adminRequest, startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { TestBrowser } from '../helpers/oauth-browser';
import { auditRows, insertPortalSession, meStatus, signInPm, SSO_ENVIRONMENT } from '../helpers/sso-pm';
import { introspect, issueCode, exchangeCode, obtainTokens, refresh, type TestClient } from '../oauth/token-helpers';

/**
 * Operators' administration of PM users (Bearer ADMIN_API_TOKEN): roles, which map onto portal roles,
 * and disablement, which ends every PM and portal session of the user at once and stops their tokens.
 */
describe('PM user administration (/api/v1/admin/users)', () => {
  let server: OAuthTestServer;
  let client: TestClient;

  beforeAll(async () => {
    server = await startOAuthTestServer(SSO_ENVIRONMENT);
    client = await server.createClient({ name: 'Admin test client' });
  });

  afterAll(async () => {
    await server?.close();
  });

  const admin = (method: string, path: string, body?: unknown, token?: string) => adminRequest(server.url, method, `/api/v1/admin/users${path}`, body, token);

  let userCount = 0;
  const newUser = () => server.createUser(`admin-user-${(userCount += 1)}@example.com`);

  const rolesVersion = (userId: string) => server.db.oneFirst(sql.type(z.object({ v: z.number() }))`SELECT roles_version AS v FROM users WHERE id = ${userId}`);

  it('reads a user; refuses without the admin token; 404 for an unknown or malformed id', async () => {
    const user = await newUser();
    const response = await admin('GET', `/${user.id}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual({ id: user.id, email: user.email, displayName: expect.any(String), roles: [], rolesVersion: 0, disabledAt: null, portalAccount: null });
    expect((await admin('GET', `/${user.id}`, undefined, 'wrong-token-0123456789-0123456789-0123')).status).toBe(401);
    expect((await admin('GET', '/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await admin('GET', '/not-a-uuid')).status).toBe(404);
  });

  it('replaces the roles (deduplicated, sorted), bumps roles_version and audits; the same roles again change nothing', async () => {
    const user = await newUser();
    const response = await admin('PUT', `/${user.id}/roles`, { roles: ['manager', 'agent', 'manager'] });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ changed: true, user: { roles: ['agent', 'manager'], rolesVersion: 1 } });
    expect((await auditRows(server.db, 'UserRolesChange')).filter((row) => row.userId === user.id)).toEqual([
      expect.objectContaining({ outcome: 'success', actorType: 'operator', actorId: 'admin-api', details: { roles: ['agent', 'manager'], previousRoles: [], rolesVersion: 1 } }),
    ]);

    const again = await admin('PUT', `/${user.id}/roles`, { roles: ['manager', 'agent'] });
    expect(await again.json()).toMatchObject({ changed: false, user: { rolesVersion: 1 } });
    expect(await rolesVersion(user.id)).toBe(1);
  });

  it('refuses a malformed role name with 400 and changes nothing', async () => {
    const user = await newUser();
    for (const roles of [['Owner'], ['has space'], ['1st'], ['x'.repeat(64)], [''], Array.from({ length: 51 }, (_, index) => `role-${index}`)]) {
      const response = await admin('PUT', `/${user.id}/roles`, { roles });
      expect(response.status, JSON.stringify(roles)).toBe(400);
      expect(await response.json()).toMatchObject({ error: 'invalid_request' });
    }
    expect((await admin('PUT', '/00000000-0000-4000-8000-000000000000/roles', { roles: ['owner'] })).status).toBe(404);
    expect(await rolesVersion(user.id)).toBe(0);
  });

  it("applies the mapped portal roles to the user's portal account at once, and marks its live sessions up to date", async () => {
    const user = await newUser();
    const { sessionId } = await signInPm(server, user.email, user.password);
    const { portalUserId, portalSessionId } = await insertPortalSession(server.db, user.id, sessionId, ['listing_viewer']);
    // The portal session's workflow is told too; Temporal is unreachable here, and the answer does not wait on it for long.
    const response = await admin('PUT', `/${user.id}/roles`, { roles: ['owner'] });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ user: { roles: ['owner'], portalAccount: { id: portalUserId, roles: ['listing_editor', 'portal_admin'] } } });
    const portalSession = await server.db.oneFirst(sql.type(z.object({ v: z.number().nullable() }))`SELECT roles_version AS v FROM portal_sessions WHERE id = ${portalSessionId}`);
    expect(portalSession).toBe(await rolesVersion(user.id));
    expect((await auditRows(server.db, 'SsoRolesApplied')).filter((row) => row.userId === user.id)).toEqual([
      expect.objectContaining({ details: expect.objectContaining({ roles: ['listing_editor', 'portal_admin'], previousRoles: ['listing_viewer'], trigger: 'operator' }) }),
    ]);
  });

  describe('disable and enable', () => {
    it('ends every PM and portal session at once, and the user cannot sign in (the same answer as a wrong password)', async () => {
      const user = await newUser();
      const first = await signInPm(server, user.email, user.password);
      const second = await signInPm(server, user.email, user.password);
      const { portalSessionId, portalUserId } = await insertPortalSession(server.db, user.id, first.sessionId);
      const { portalSessionId: secondPortalSessionId } = await insertPortalSession(server.db, user.id, second.sessionId);
      const bystander = await newUser();
      const bystanderSession = await signInPm(server, bystander.email, bystander.password);

      const response = await admin('POST', `/${user.id}/disable`);
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ changed: true, pmSessionsEnded: 2, portalSessionsEnded: 2, user: { disabledAt: expect.any(String) } });
      expect(await meStatus(server, first.sessionToken)).toBe(401);
      expect(await meStatus(server, second.sessionToken)).toBe(401);
      expect(await meStatus(server, bystanderSession.sessionToken)).toBe(200);
      const ends = await server.db.any(sql.type(z.object({ reason: z.string().nullable() }))`
        SELECT ended_reason AS reason FROM user_sessions WHERE user_id = ${user.id}
        UNION ALL SELECT ended_reason FROM portal_sessions WHERE portal_user_id = ${portalUserId} AND ended_at IS NOT NULL`);
      expect(ends.map((end) => end.reason)).toEqual(['user_disabled', 'user_disabled', 'user_disabled', 'user_disabled']);
      expect((await auditRows(server.db, 'UserDisable')).filter((row) => row.userId === user.id)).toEqual([
        expect.objectContaining({ actorType: 'operator', details: { alreadyDisabled: false, pmSessionsEnded: 2, portalSessionsEnded: 2 } }),
      ]);
      // One SsoLogout row per portal session the disablement ended, naming the pair.
      const ssoLogouts = (await auditRows(server.db, 'SsoLogout')).filter((row) => row.userId === user.id);
      expect(ssoLogouts).toHaveLength(2);
      expect(ssoLogouts).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ outcome: 'success', actorType: 'operator', details: expect.objectContaining({ initiatedBy: 'user_disabled', portalSessionId, sid: first.sessionId }) }),
          expect.objectContaining({ outcome: 'success', actorType: 'operator', details: expect.objectContaining({ initiatedBy: 'user_disabled', portalSessionId: secondPortalSessionId, sid: second.sessionId }) }),
        ]),
      );

      const login = await fetch(`${server.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: user.email, password: user.password }) });
      const wrongPassword = await fetch(`${server.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: user.email, password: 'wrong password, twelve+' }) });
      expect(login.status).toBe(401);
      expect(await login.json()).toEqual(await wrongPassword.json());
      const pageLogin = await new TestBrowser(server.url).signIn(user.email, user.password);
      expect(pageLogin.status).toBe(401);
      const failures = (await auditRows(server.db, 'UserLoginFailed')).filter((row) => row.userId === user.id).map((row) => row.details.reason);
      expect(failures).toEqual(['disabled', 'disabled']);

      // A second disable changes nothing and ends nothing more.
      expect(await (await admin('POST', `/${user.id}/disable`)).json()).toMatchObject({ changed: false, pmSessionsEnded: 0, portalSessionsEnded: 0 });
      expect((await auditRows(server.db, 'SsoLogout')).filter((row) => row.userId === user.id)).toHaveLength(2);
    });

    it("stops the user's OAuth tokens while disabled (no refresh, no code exchange, introspection inactive) and lets them work again once enabled", async () => {
      const user = await newUser();
      const tokens = await obtainTokens(server, client, user.id);
      const pendingCode = await issueCode(server, client, user.id);
      expect((await admin('POST', `/${user.id}/disable`)).status).toBe(200);

      expect(await introspect(server, client, tokens.access_token)).toEqual({ active: false });
      expect(await introspect(server, client, tokens.refresh_token)).toEqual({ active: false });
      const refused = await refresh(server, client, tokens.refresh_token);
      expect(refused.status).toBe(400);
      expect(refused.body).toMatchObject({ error: 'invalid_grant' });
      expect((await exchangeCode(server, client, pendingCode)).body).toMatchObject({ error: 'invalid_grant' });

      const enabled = await admin('POST', `/${user.id}/enable`);
      expect(await enabled.json()).toMatchObject({ changed: true, user: { disabledAt: null } });
      expect((await auditRows(server.db, 'UserEnable')).filter((row) => row.userId === user.id)).toHaveLength(1);
      expect(await introspect(server, client, tokens.access_token)).toMatchObject({ active: true });
      expect((await refresh(server, client, tokens.refresh_token)).status).toBe(200);
      expect((await signInPm(server, user.email, user.password)).sessionToken).toBeTruthy();
      expect(await (await admin('POST', `/${user.id}/enable`)).json()).toMatchObject({ changed: false });
    });
  });
});
