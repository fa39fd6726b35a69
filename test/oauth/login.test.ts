import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { parseForm, TestBrowser } from '../helpers/oauth-browser';

const GENERIC = 'Email or password is wrong, or the account is temporarily locked.';
const MAX_FAILURES = 3;

/** The HTML login page: sessions, return URLs without open redirects, login CSRF, generic failures, lockout. */
describe('login page', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer({ LOGIN_MAX_FAILURES: String(MAX_FAILURES), LOGIN_LOCKOUT_SECONDS: '900' });
  });

  afterAll(async () => {
    await server?.close();
  });

  const auditRows = (action: string, email: string) =>
    server.db.any(sql.type(z.object({ ip: z.string().nullable(), userAgent: z.string().nullable(), details: z.record(z.unknown()) }))`
      SELECT host(ip_address) AS ip, user_agent AS "userAgent", details FROM audit_log WHERE action = ${action} AND details->>'email' = ${email}`);

  async function loginPage(browser: TestBrowser, returnTo?: string) {
    const response = await browser.get(returnTo === undefined ? '/login' : `/login?${new URLSearchParams({ return_to: returnTo })}`);
    expect(response.status).toBe(200);
    return response.text();
  }

  it('signs in, sets the session cookie and redirects (303) to return_to', async () => {
    const user = await server.createUser('login-ok@example.com');
    const browser = new TestBrowser(server.url);
    const returnTo = '/oauth/authorize?client_id=c_x&state=a%20b';
    const page = await loginPage(browser, returnTo);
    expect(page).toContain('<meta name="viewport"');
    expect(page).not.toContain('<script');
    expect(parseForm(page).fields.return_to).toBe(returnTo);
    const response = await browser.submit(page, { email: user.email, password: user.password });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe(returnTo);
    const cookie = response.headers.getSetCookie().find((header) => header.startsWith('pm_session='))!;
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    expect(browser.cookies.has('pm_login_csrf')).toBe(false);

    const me = await browser.get('/api/v1/auth/me');
    expect(me.status).toBe(200);
    expect(((await me.json()) as { user: { email: string } }).user.email).toBe(user.email);
    const rows = await server.db.any(sql.type(z.object({ ip: z.string().nullable(), userAgent: z.string().nullable() }))`
      SELECT host(ip_address) AS ip, user_agent AS "userAgent" FROM audit_log WHERE action = 'UserLogin' AND user_id = ${user.id}`);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.ip).toBe('127.0.0.1');
    expect(rows[0]!.userAgent).toBeTruthy();
  });

  it('login and error pages carry the anti-framing and no-cache headers', async () => {
    const response = await new TestBrowser(server.url).get('/login');
    expect(response.headers.get('x-frame-options')).toBe('DENY');
    expect(response.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
  });

  it.each([
    '//evil.example',
    '//evil.example/oauth/authorize',
    'https://evil.example',
    'http://evil.example/x',
    '/\\evil.example',
    '\\\\evil.example',
    '/\t/evil.example',
    '/.//evil.example',
    '/%2e//evil.example',
    '/oauth/..//evil.example',
    'javascript:alert(1)',
    'evil.example',
    '',
  ])('ignores the return URL %j on the login page', async (returnTo) => {
    const page = await loginPage(new TestBrowser(server.url), returnTo);
    expect(parseForm(page).fields.return_to).toBe('/oauth/grants');
  });

  it('falls back to the default when a tampered return_to is posted', async () => {
    const user = await server.createUser('login-redirect@example.com');
    for (const returnTo of ['//evil.example', 'https://evil.example']) {
      const browser = new TestBrowser(server.url);
      const page = await loginPage(browser);
      const response = await browser.submit(page, { email: user.email, password: user.password, return_to: returnTo });
      expect(response.status).toBe(303);
      expect(response.headers.get('location')).toBe('/oauth/grants');
    }
  });

  it('answers a wrong password and an unknown email with the same generic message (401), no session', async () => {
    const user = await server.createUser('login-wrong@example.com');
    for (const [email, password] of [
      [user.email, 'wrong password, clearly'],
      ['nobody@example.com', user.password],
    ]) {
      const browser = new TestBrowser(server.url);
      const response = await browser.submit(await loginPage(browser), { email: email!, password: password! });
      expect(response.status).toBe(401);
      const page = await response.text();
      expect(page).toContain(GENERIC);
      expect(page).not.toContain(password!);
      expect(browser.cookies.has('pm_session')).toBe(false);
    }
    const failed = await auditRows('UserLoginFailed', user.email);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.ip).toBe('127.0.0.1');
    expect(JSON.stringify(failed[0]!.details)).not.toContain('wrong password');
  });

  it('refuses a login POST without the double-submit CSRF token (login CSRF)', async () => {
    const user = await server.createUser('login-csrf@example.com');
    const browser = new TestBrowser(server.url);
    const form = parseForm(await loginPage(browser));
    browser.cookies.delete('pm_login_csrf');
    const response = await browser.post('/login', { ...form.fields, email: user.email, password: user.password });
    expect(response.status).toBe(403);
    expect(browser.cookies.has('pm_session')).toBe(false);
  });

  it(`locks the account after ${MAX_FAILURES} failures, even for the right password, with one UserLoginLocked row`, async () => {
    const user = await server.createUser('login-lock@example.com');
    const browser = new TestBrowser(server.url);
    for (let attempt = 0; attempt < MAX_FAILURES; attempt += 1) {
      const response = await browser.submit(await loginPage(browser), { email: user.email, password: `wrong-${attempt}` });
      expect(response.status).toBe(401);
    }
    const locked = await browser.submit(await loginPage(browser), { email: user.email, password: user.password });
    expect(locked.status).toBe(401);
    expect(await locked.text()).toContain(GENERIC);
    expect(browser.cookies.has('pm_session')).toBe(false);

    // The JSON login shares the lockout.
    const json = await fetch(`${server.url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: user.email.toUpperCase(), password: user.password }),
    });
    expect(json.status).toBe(401);

    const lockedRows = await auditRows('UserLoginLocked', user.email);
    expect(lockedRows).toHaveLength(1);
    expect(lockedRows[0]!.ip).toBe('127.0.0.1');
    expect(await auditRows('UserLoginFailed', user.email)).toHaveLength(MAX_FAILURES + 1);
    const everything = await server.db.oneFirst(sql.type(z.object({ dump: z.string() }))`SELECT string_agg(row_to_json(a)::text, ' ') AS dump FROM audit_log a`);
    expect(everything).not.toContain(user.password);
    expect(everything).not.toContain('wrong-0');

    // When the lock has run out, the right password works and the counter is gone.
    await server.db.query(sql.unsafe`UPDATE user_login_failures SET locked_until = now() - interval '1 second' WHERE email = ${user.email}`);
    const unlocked = await browser.submit(await loginPage(browser), { email: user.email, password: user.password });
    expect(unlocked.status).toBe(303);
    const left = await server.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM user_login_failures WHERE email = ${user.email}`);
    expect(left).toBe(0);
    expect(await auditRows('UserLoginLocked', user.email)).toHaveLength(1);
  });

  it('a successful login resets the failure counter (JSON login shares it)', async () => {
    const user = await server.createUser('login-reset@example.com');
    const jsonLogin = (password: string) =>
      fetch(`${server.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: user.email, password }) });
    for (let round = 0; round < 2; round += 1) {
      for (let attempt = 0; attempt < MAX_FAILURES - 1; attempt += 1) expect((await jsonLogin('wrong password!')).status).toBe(401);
      expect((await jsonLogin(user.password)).status).toBe(200);
    }
    const browser = new TestBrowser(server.url);
    expect((await browser.submit(await loginPage(browser), { email: user.email, password: user.password })).status).toBe(303);
    expect(await auditRows('UserLoginLocked', user.email)).toHaveLength(0);
  });
});

describe('login hardening', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer({ LOGIN_MAX_FAILURES: String(MAX_FAILURES), LOGIN_LOCKOUT_SECONDS: '900' });
  });

  afterAll(async () => {
    await server?.close();
  });

  const jsonLogin = (email: string, password: string) =>
    fetch(`${server.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });

  const failures = (email: string) =>
    server.db.anyFirst(sql.type(z.object({ reason: z.string() }))`
      SELECT details->>'reason' AS reason FROM audit_log WHERE action = 'UserLoginFailed' AND details->>'email' = ${email}`);

  it(`evaluates no more than ${MAX_FAILURES} passwords of a parallel burst, and the right password after it is refused`, async () => {
    const user = await server.createUser('login-burst@example.com');
    const burst = 15;
    const responses = await Promise.all(Array.from({ length: burst }, (_unused, attempt) => jsonLogin(user.email, `wrong guess ${attempt}`)));
    expect(responses.map((response) => response.status)).toEqual(Array.from({ length: burst }, () => 401));

    const reasons = await failures(user.email);
    expect(reasons).toHaveLength(burst);
    // Only the attempts that fit under the limit had their password checked; the others were refused as locked.
    expect(reasons.filter((reason) => reason === 'invalid_credentials')).toHaveLength(MAX_FAILURES);
    expect(reasons.filter((reason) => reason === 'locked')).toHaveLength(burst - MAX_FAILURES);
    const lockedRows = await server.db.oneFirst(sql.type(z.object({ count: z.number() }))`
      SELECT count(*)::int AS count FROM audit_log WHERE action = 'UserLoginLocked' AND details->>'email' = ${user.email}`);
    expect(lockedRows).toBe(1);

    const right = await jsonLogin(user.email, user.password);
    expect(right.status).toBe(401);
    expect(right.headers.get('set-cookie')).toBeNull();
  });

  it('answers 400, not 500, to a NUL character in any field of the login form or the return_to query', async () => {
    const user = await server.createUser('login-nul@example.com');
    for (const field of ['email', 'password', 'return_to', 'csrf_token']) {
      const browser = new TestBrowser(server.url);
      const page = await (await browser.get('/login')).text();
      const inputs: Record<string, string> = { email: user.email, password: user.password };
      inputs[field] = field === 'csrf_token' ? `${parseForm(page).fields.csrf_token}\u0000` : `${inputs[field] ?? '/oauth/grants'}\u0000`;
      const response = await browser.submit(page, inputs);
      expect(response.status, field).toBe(400);
      expect(await response.text()).toContain('The form was malformed.');
      expect(browser.cookies.has('pm_session')).toBe(false);
    }
    const query = await new TestBrowser(server.url).get('/login?return_to=%2Foauth%2Fgrants%00');
    expect(query.status).toBe(400);
  });

  it('revokes the session the browser already had when it signs in again (session fixation)', async () => {
    const user = await server.createUser('login-fixation@example.com');
    const browser = new TestBrowser(server.url);
    expect((await browser.signIn(user.email, user.password)).status).toBe(303);
    const first = browser.cookies.get('pm_session')!;
    expect((await browser.signIn(user.email, user.password)).status).toBe(303);
    const second = browser.cookies.get('pm_session')!;
    expect(second).not.toBe(first);

    const me = (token: string) => fetch(`${server.url}/api/v1/auth/me`, { headers: { authorization: `Bearer ${token}` } });
    expect((await me(first)).status).toBe(401);
    expect((await me(second)).status).toBe(200);
  });

  it('a failed login leaves the session the browser already had alone', async () => {
    const user = await server.createUser('login-keep@example.com');
    const browser = new TestBrowser(server.url);
    expect((await browser.signIn(user.email, user.password)).status).toBe(303);
    const session = browser.cookies.get('pm_session')!;
    expect((await browser.signIn(user.email, 'not the password')).status).toBe(401);
    expect((await fetch(`${server.url}/api/v1/auth/me`, { headers: { authorization: `Bearer ${session}` } })).status).toBe(200);
  });
});

describe('login rate limit', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer();
  });

  afterAll(async () => {
    await server?.close();
  });

  it('limits POST /login to 20 a minute per IP', async () => {
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 21; attempt += 1) {
      const response = await fetch(`${server.url}/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ email: `rate-${attempt}@example.com`, password: 'whatever' }).toString(),
      });
      statuses.push(response.status);
    }
    expect(statuses.slice(0, 20).every((status) => status === 403)).toBe(true);
    expect(statuses[20]).toBe(429);
  });
});
