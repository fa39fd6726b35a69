import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startRealityTestServers, type RealityTestServers } from '../helpers/reality';

/**
 * Session sync (a): both servers share the database, so every portal request checks its session with
 * the PM session it came from, and a logout, disablement, role change or idle pair shows at once.
 */
describe('portal session sync on every request', () => {
  let servers: RealityTestServers;

  beforeAll(async () => {
    servers = await startRealityTestServers();
  });

  afterAll(async () => {
    await servers?.close();
  });

  /** A PM user with a portal session opened through the redemption API. */
  async function ssoSession(roles: string[] = []) {
    const pm = await servers.signInPmUser({ roles });
    return { pm, ...(await servers.apiPortalSession(pm)) };
  }

  const me = (token: string) => fetch(`${servers.url}/api/v1/portal/me`, { headers: { authorization: `Bearer ${token}` } });

  const ending = (portalSessionId: string) =>
    servers.db.one(sql.type(z.object({ ended: z.boolean(), reason: z.string().nullable() }))`
      SELECT ended_at IS NOT NULL AS ended, ended_reason AS reason FROM portal_sessions WHERE id = ${portalSessionId}`);

  async function logoutAudit(portalSessionId: string) {
    return (await servers.auditRows('SsoLogout')).filter((row) => row.details.portalSessionId === portalSessionId).map((row) => row.details);
  }

  it('ends the portal session on the next request once the PM session was revoked', async () => {
    const { pm, sessionToken, portalSessionId } = await ssoSession();
    expect((await me(sessionToken)).status).toBe(200);
    await servers.api.db.query(sql.unsafe`UPDATE user_sessions SET revoked_at = now(), ended_reason = 'logout' WHERE id = ${pm.sessionId}`);

    const refused = await me(sessionToken);
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ error: 'unauthenticated' });
    expect(await ending(portalSessionId)).toEqual({ ended: true, reason: 'pm_session_ended' });
    expect(await logoutAudit(portalSessionId)).toEqual([expect.objectContaining({ initiatedBy: 'pm', reason: 'pm_session_ended', sid: pm.sessionId })]);
    expect((await me(sessionToken)).status).toBe(401);
  });

  it('signs the browser out on its next page view, clears the cookie and says why', async () => {
    const pm = await servers.signInPmUser();
    const browser = servers.browser();
    await servers.redeemInBrowser(browser, { userId: pm.user.id, sessionId: pm.sessionId });
    expect(await (await browser.get('/')).text()).toContain('Signed in as');
    await pm.browser.post('/api/v1/auth/logout', {});

    const page = await browser.get('/');
    const text = await page.text();
    expect(text).toContain('You were signed out because your PM app session ended.');
    expect(text).toContain('href="/sso/login"');
    expect(browser.cookies.has('portal_session')).toBe(false);
  });

  it('shows the PM user\'s new roles on the very next request', async () => {
    const { pm, sessionToken } = await ssoSession(['viewer']);
    expect(await (await me(sessionToken)).json()).toMatchObject({ roles: ['listing_viewer'] });
    await servers.api.db.query(sql.unsafe`UPDATE users SET roles = '{owner}', roles_version = roles_version + 1 WHERE id = ${pm.user.id}`);

    expect(await (await me(sessionToken)).json()).toMatchObject({ roles: ['listing_editor', 'portal_admin'] });
    const applied = (await servers.auditRows('SsoRolesApplied')).filter((row) => row.userId === pm.user.id).at(-1)!;
    expect(applied.details).toMatchObject({ trigger: 'request', roles: ['listing_editor', 'portal_admin'], previousRoles: ['listing_viewer'] });
  });

  it('ends the portal session of a disabled PM user', async () => {
    const { pm, sessionToken, portalSessionId } = await ssoSession();
    await servers.api.db.query(sql.unsafe`UPDATE users SET disabled_at = now() WHERE id = ${pm.user.id}`);
    expect((await me(sessionToken)).status).toBe(401);
    expect(await ending(portalSessionId)).toEqual({ ended: true, reason: 'user_disabled' });
    expect(await logoutAudit(portalSessionId)).toEqual([expect.objectContaining({ initiatedBy: 'user_disabled' })]);
  });

  it('ends a pair that neither side used for SESSION_IDLE_SECONDS, and keeps one the PM side used', async () => {
    const idle = servers.config.sso.sessionIdleSeconds;
    const unused = await ssoSession();
    const keptAlive = await ssoSession();
    for (const { portalSessionId } of [unused, keptAlive]) {
      await servers.db.query(sql.unsafe`UPDATE portal_sessions SET last_seen_at = now() - make_interval(secs => ${idle + 5}) WHERE id = ${portalSessionId}`);
    }
    await servers.db.query(sql.unsafe`UPDATE user_sessions SET last_seen_at = now() - make_interval(secs => ${idle + 5}) WHERE id = ${unused.pm.sessionId}`);

    expect((await me(unused.sessionToken)).status).toBe(401);
    expect(await ending(unused.portalSessionId)).toEqual({ ended: true, reason: 'idle' });
    expect(await logoutAudit(unused.portalSessionId)).toEqual([expect.objectContaining({ initiatedBy: 'idle_expiry' })]);
    expect((await me(keptAlive.sessionToken)).status).toBe(200);
  });

  it('counts a portal request as use of the PM session too, so the PM app keeps the user signed in', async () => {
    const { pm, sessionToken, portalSessionId } = await ssoSession();
    const idle = servers.config.sso.sessionIdleSeconds;
    await servers.db.query(sql.unsafe`UPDATE portal_sessions SET last_seen_at = now() - make_interval(secs => ${idle - 60}) WHERE id = ${portalSessionId}`);
    await servers.db.query(sql.unsafe`UPDATE user_sessions SET last_seen_at = now() - make_interval(secs => ${idle - 60}) WHERE id = ${pm.sessionId}`);

    expect((await me(sessionToken)).status).toBe(200);
    const recent = await servers.db.one(sql.type(z.object({ portal: z.boolean(), pm: z.boolean() }))`
      SELECT (SELECT last_seen_at > now() - interval '1 minute' FROM portal_sessions WHERE id = ${portalSessionId}) AS portal,
             (SELECT last_seen_at > now() - interval '1 minute' FROM user_sessions WHERE id = ${pm.sessionId}) AS pm`);
    expect(recent).toEqual({ portal: true, pm: true });
  });

  it('ends a portal session past its absolute lifetime', async () => {
    const { sessionToken, portalSessionId } = await ssoSession();
    await servers.db.query(sql.unsafe`UPDATE portal_sessions SET expires_at = now() - interval '1 second' WHERE id = ${portalSessionId}`);
    expect((await me(sessionToken)).status).toBe(401);
    expect(await ending(portalSessionId)).toEqual({ ended: true, reason: 'expired' });
    expect(await logoutAudit(portalSessionId)).toEqual([expect.objectContaining({ initiatedBy: 'absolute_expiry' })]);
  });

  it('never outlives the PM session it came from', async () => {
    const pm = await servers.signInPmUser();
    await servers.api.db.query(sql.unsafe`UPDATE user_sessions SET expires_at = now() + interval '10 minutes' WHERE id = ${pm.sessionId}`);
    const response = await servers.redeemApi(await servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId }));
    const { expiresAt } = (await response.json()) as { expiresAt: string };
    const pmExpiresAt = await servers.db.oneFirst(sql.type(z.object({ expiresAt: z.number() }))`
      SELECT expires_at AS "expiresAt" FROM user_sessions WHERE id = ${pm.sessionId}`);
    expect(new Date(expiresAt).getTime()).toBe(pmExpiresAt);
  });
});
