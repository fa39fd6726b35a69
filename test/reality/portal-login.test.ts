import { randomUUID } from 'node:crypto';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createPortalUser } from '../../platform/portal/users';
import { runScript } from '../helpers/cli';
import { parseForm } from '../helpers/oauth-browser';
import { USER_PASSWORD } from '../helpers/oauth-server';
import { startRealityTestServers, type RealityTestServers } from '../helpers/reality';

const PORTAL_PASSWORD = 'portal account password';

/** Portal-only accounts (no PM user) keep their own email and password login at the portal. */
describe('portal-only accounts', () => {
  let servers: RealityTestServers;

  beforeAll(async () => {
    servers = await startRealityTestServers({ realityEnvironment: { LOGIN_MAX_FAILURES: '3' } });
  });

  afterAll(async () => {
    await servers?.close();
  });

  async function portalOnlyUser(roles: string[] = []) {
    const email = `portal-${randomUUID()}@example.com`;
    const user = await createPortalUser(servers.db, { email, displayName: 'Pat Portal', password: PORTAL_PASSWORD, roles });
    return { ...user, email };
  }

  async function signIn(email: string, password: string) {
    const browser = servers.browser();
    const form = await (await browser.get('/login')).text();
    return { browser, response: await browser.submit(form, { email, password }) };
  }

  it('signs in with email and password, and the page shows the account and its roles', async () => {
    const user = await portalOnlyUser(['listing_viewer']);
    const { browser, response } = await signIn(user.email, PORTAL_PASSWORD);
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/');
    expect(response.headers.getSetCookie().find((cookie) => cookie.startsWith('portal_session='))).toMatch(/HttpOnly.*SameSite=Lax|SameSite=Lax.*HttpOnly/i);

    const page = await (await browser.get('/')).text();
    expect(page).toContain(`Signed in as <strong>Pat Portal</strong> (${user.email})`);
    expect(page).toContain('<li>listing_viewer</li>');
    expect(page).toContain('your portal account (email and password)');
    const login = (await servers.auditRows('PortalLogin')).find((row) => row.details.portalUserId === user.id)!;
    expect(login).toMatchObject({ actorId: `portal:${user.id}`, details: { method: 'password' } });
  });

  it('refuses a wrong password with the same answer as an unknown email, audited', async () => {
    const user = await portalOnlyUser();
    const wrong = await signIn(user.email, 'not the password at all');
    const unknown = await signIn(`nobody-${randomUUID()}@example.com`, PORTAL_PASSWORD);
    for (const { response } of [wrong, unknown]) {
      expect(response.status).toBe(401);
      expect(await response.text()).toContain('Email or password is wrong, or the account is temporarily locked.');
    }
    expect(wrong.browser.cookies.has('portal_session')).toBe(false);
    const failures = (await servers.auditRows('PortalLoginFailed')).filter((row) => row.details.email === user.email);
    expect(failures.map((row) => row.details.reason)).toEqual(['invalid_credentials']);
  });

  it('refuses a submission without the form\'s CSRF token', async () => {
    const user = await portalOnlyUser();
    const response = await servers.browser().post('/login', { email: user.email, password: PORTAL_PASSWORD });
    expect(response.status).toBe(403);
    expect(response.headers.getSetCookie().some((cookie) => cookie.startsWith('portal_session='))).toBe(false);
    // The fresh form it answers with works.
    const browser = servers.browser();
    const forged = await browser.post('/login', { email: user.email, password: PORTAL_PASSWORD, csrf_token: 'x'.repeat(43) });
    expect(forged.status).toBe(403);
    expect((await browser.submit(await forged.text(), { email: user.email, password: PORTAL_PASSWORD })).status).toBe(303);
  });

  it('locks the account after LOGIN_MAX_FAILURES failures, without locking the PM user of the same email', async () => {
    const pm = await servers.api.createUser(`shared-${randomUUID()}@example.com`);
    await createPortalUser(servers.db, { email: pm.email, displayName: 'Shared email', password: PORTAL_PASSWORD });
    for (let attempt = 0; attempt < 3; attempt += 1) expect((await signIn(pm.email, 'wrong password, again')).response.status).toBe(401);
    expect((await signIn(pm.email, PORTAL_PASSWORD)).response.status).toBe(401);
    const reasons = (await servers.auditRows('PortalLoginFailed')).filter((row) => row.details.email === pm.email).map((row) => row.details.reason);
    expect(reasons).toEqual(['invalid_credentials', 'invalid_credentials', 'invalid_credentials', 'locked', 'locked']);

    const pmLogin = await fetch(`${servers.api.url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: pm.email, password: USER_PASSWORD }),
    });
    expect(pmLogin.status).toBe(200);
  });

  it("does not take a PM user's password: PM users sign in with the PM app", async () => {
    const pm = await servers.api.createUser(`pm-only-${randomUUID()}@example.com`);
    expect((await signIn(pm.email, USER_PASSWORD)).response.status).toBe(401);
    const page = await (await servers.browser().get('/login')).text();
    expect(page).toContain('href="/sso/login"');
    expect(parseForm(page).action).toBe('/login');
  });

  it('keeps a portal-only session independent of any PM session', async () => {
    const user = await portalOnlyUser();
    const { browser } = await signIn(user.email, PORTAL_PASSWORD);
    const session = await servers.db.one(sql.type(z.object({ method: z.string(), pmSessionId: z.string().nullable() }))`
      SELECT method, pm_session_id AS "pmSessionId" FROM portal_sessions WHERE portal_user_id = ${user.id}`);
    expect(session).toEqual({ method: 'password', pmSessionId: null });
    expect(await (await browser.get('/')).text()).toContain('Signed in as');
  });

  it('creates portal-only accounts from the admin command line, the password read from stdin', async () => {
    const email = `cli-${randomUUID()}@example.com`;
    const run = (args: string[], stdin: string) => runScript('scripts/admin.ts', args, { databaseUrl: servers.config.databaseUrl!, stdin });
    const created = await run(['portal-users', 'create', email, 'Cli Person', '--roles', 'listing_viewer', '--password-stdin'], `${PORTAL_PASSWORD}\n`);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    expect(created.stdout.trim()).toMatch(/^[0-9a-f-]{36}$/);
    expect((await signIn(email, PORTAL_PASSWORD)).response.status).toBe(303);

    const again = await run(['portal-users', 'create', email, 'Cli Person', '--password-stdin'], `${PORTAL_PASSWORD}\n`);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('exists already');
  });
});
