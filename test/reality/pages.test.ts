import { randomUUID } from 'node:crypto';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createPortalUser } from '../../platform/portal/users';
import { parseForm } from '../helpers/oauth-browser';
import { startRealityTestServers, type RealityTestServers } from '../helpers/reality';

/** The portal's pages: who is signed in, their roles, and signing out (which ends the PM session too). */
describe('portal pages and sign-out', () => {
  let servers: RealityTestServers;

  beforeAll(async () => {
    servers = await startRealityTestServers();
  });

  afterAll(async () => {
    await servers?.close();
  });

  async function ssoBrowser(roles: string[] = []) {
    const pm = await servers.signInPmUser({ roles });
    const browser = servers.browser();
    const response = await servers.redeemInBrowser(browser, { userId: pm.user.id, sessionId: pm.sessionId });
    expect(response.status).toBe(303);
    const portalSessionId = await servers.portalSessionIdOf(browser.cookies.get('portal_session')!);
    return { pm, browser, portalSessionId };
  }

  it('offers both ways in when signed out, as a page without scripts', async () => {
    const response = await servers.browser().get('/');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
    const page = await response.text();
    expect(page).toContain('<a href="/sso/login">Sign in with the PM app</a>');
    expect(page).toContain('<a href="/login">Portal account sign-in</a>');
    expect(page).not.toContain('<script');
  });

  it('shows who is signed in, their portal roles, how they signed in, and a Sign out button', async () => {
    const { pm, browser } = await ssoBrowser(['agent']);
    const page = await (await browser.get('/')).text();
    expect(page).toContain(`(${pm.user.email})`);
    expect(page).toContain('<li>listing_editor</li>');
    expect(page).toContain('single sign-on from the PM app');
    const form = parseForm(page);
    expect(form).toMatchObject({ action: '/logout', method: 'post' });
    expect(form.buttons.map((button) => button.label)).toEqual(['Sign out']);
  });

  it('signs out of the portal and of the PM app at once, in the shared database, even when the SSO session workflow cannot be told', async () => {
    const { pm, browser, portalSessionId } = await ssoBrowser();
    const page = await (await browser.get('/')).text();
    const response = await browser.submit(page);
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/');
    expect(browser.cookies.has('portal_session')).toBe(false);
    expect(await (await browser.get('/')).text()).toContain('Sign in with the PM app');

    const ended = await servers.db.one(sql.type(z.object({ portal: z.string().nullable(), pm: z.string().nullable() }))`
      SELECT (SELECT ended_reason FROM portal_sessions WHERE id = ${portalSessionId}) AS portal,
             (SELECT ended_reason FROM user_sessions WHERE id = ${pm.sessionId} AND revoked_at IS NOT NULL) AS pm`);
    expect(ended).toEqual({ portal: 'logout', pm: 'portal_logout' });
    // Temporal is unreachable in this test: the sign-out itself ended the PM session, so the PM app's next request is signed out.
    expect((await pm.browser.get('/api/v1/auth/me')).status).toBe(401);
    const audit = (await servers.auditRows('SsoLogout')).filter((row) => row.details.portalSessionId === portalSessionId);
    expect(audit).toEqual([
      expect.objectContaining({ actorType: 'user', actorId: pm.user.id, details: expect.objectContaining({ initiatedBy: 'portal', reason: 'logout', sid: pm.sessionId }) }),
      expect.objectContaining({ actorType: 'user', actorId: pm.user.id, userId: pm.user.id, details: expect.objectContaining({ initiatedBy: 'portal', reason: 'portal_logout', sid: pm.sessionId }) }),
    ]);
  });

  it('refuses a sign-out without the form\'s CSRF token and stays signed in', async () => {
    const { browser, portalSessionId } = await ssoBrowser();
    const response = await browser.post('/logout', {});
    expect(response.status).toBe(403);
    expect(await (await browser.get('/')).text()).toContain('Signed in as');
    const ended = await servers.db.oneFirst(sql.type(z.object({ ended: z.boolean() }))`SELECT ended_at IS NOT NULL AS ended FROM portal_sessions WHERE id = ${portalSessionId}`);
    expect(ended).toBe(false);
  });

  it('signs a portal-only account out, audited as PortalLogout', async () => {
    const email = `pages-${randomUUID()}@example.com`;
    const user = await createPortalUser(servers.db, { email, displayName: 'Page Person', password: 'portal account password' });
    const browser = servers.browser();
    await browser.submit(await (await browser.get('/login')).text(), { email, password: 'portal account password' });
    expect((await browser.submit(await (await browser.get('/')).text())).status).toBe(303);
    const audit = (await servers.auditRows('PortalLogout')).filter((row) => row.details.portalUserId === user.id);
    expect(audit).toEqual([expect.objectContaining({ actorId: `portal:${user.id}`, details: expect.objectContaining({ initiatedBy: 'portal', method: 'password' }) })]);
  });

  it('answers /api/v1/portal/me with the user, roles and session, or 401', async () => {
    const { pm, browser } = await ssoBrowser(['viewer']);
    const me = await browser.get('/api/v1/portal/me');
    expect(me.status).toBe(200);
    const body = (await me.json()) as { user: { pmUserId: string }; roles: string[]; session: { method: string; expiresAt: string } };
    expect(body).toMatchObject({ user: { pmUserId: pm.user.id, email: pm.user.email }, roles: ['listing_viewer'], session: { method: 'sso_token' } });
    expect(Date.parse(body.session.expiresAt)).toBeGreaterThan(Date.now());

    const anonymous = await fetch(`${servers.url}/api/v1/portal/me`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ error: 'unauthenticated' });
    expect((await fetch(`${servers.url}/api/v1/portal/me`, { headers: { authorization: 'Bearer not-a-session' } })).status).toBe(401);
  });
});
