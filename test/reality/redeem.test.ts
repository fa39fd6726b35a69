import { generateKeyPair } from 'jose';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createPortalUser } from '../../platform/portal/users';
import { hashBearerValue } from '../../platform/secrets';
import { apiServerKeySet } from '../../platform/sso/api-server-keys';
import { freePort } from '../helpers/ports';
import type { TestBrowser } from '../helpers/oauth-browser';
import { startRealityTestServers, type PmSignIn, type RealityTestServers } from '../helpers/reality';

/** The PM app's "Open Reality Portal" button lands on the portal with a one-time SSO token. */
describe('SSO token redemption', () => {
  let servers: RealityTestServers;

  beforeAll(async () => {
    servers = await startRealityTestServers();
  });

  afterAll(async () => {
    await servers?.close();
  });

  async function rejectionReasons(): Promise<unknown[]> {
    return (await servers.auditRows('SsoTokenRejected')).map((row) => row.details.reason);
  }

  /** A token bound to `browser` (its handoff done), as the PM app's token step mints it. */
  async function boundToken(browser: TestBrowser, pm: PmSignIn): Promise<string> {
    return servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId }, { browserBinding: await servers.handoff(browser) });
  }

  const portalSessionsOf = (pmUserId: string) =>
    servers.db.any(sql.type(z.object({ id: z.string(), endedReason: z.string().nullable() }))`
      SELECT ps.id, ps.ended_reason AS "endedReason" FROM portal_sessions ps JOIN portal_users pu ON pu.id = ps.portal_user_id
      WHERE pu.pm_user_id = ${pmUserId} ORDER BY ps.created_at`);

  it('hands the browser to the PM app with a binding cookie, and opens a portal session from its bound link with the mapped roles', async () => {
    const pm = await servers.signInPmUser({ roles: ['manager', 'viewer'] });
    const browser = servers.browser();
    const handoff = await browser.get('/sso/handoff');
    expect(handoff.status).toBe(303);
    expect(handoff.headers.get('cache-control')).toBe('no-store');
    const next = new URL(handoff.headers.get('location')!);
    expect(`${next.origin}${next.pathname}`).toBe(`${servers.api.url}/sso/reality-portal/token`);
    const bindingCookie = handoff.headers.getSetCookie().find((header) => header.startsWith('portal_sso_binding='))!;
    expect(bindingCookie).toMatch(/HttpOnly/i);
    expect(bindingCookie).toMatch(/SameSite=Lax/i);
    expect(bindingCookie).toMatch(/Path=\/sso(;|$)/);
    expect(bindingCookie).toMatch(/Max-Age=600/);
    // Only the hash of the cookie leaves the browser.
    const binding = next.searchParams.get('binding')!;
    expect(binding).toBe(hashBearerValue(browser.cookies.get('portal_sso_binding')!));

    const token = await servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId }, { browserBinding: binding });
    const response = await browser.get(`/sso/redeem?sso_token=${token}`);
    expect(response.status).toBe(303);
    expect(browser.cookies.has('portal_sso_binding')).toBe(false);
    expect(response.headers.get('location')).toBe('/');
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    const cookie = response.headers.getSetCookie().find((header) => header.startsWith('portal_session='))!;
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    expect(cookie).toMatch(/Path=\//);

    const page = await (await browser.get('/')).text();
    expect(page).toContain(`Signed in as <strong>${pm.user.email.split('@')[0]}</strong> (${pm.user.email})`);
    expect(page).toContain('<li>listing_editor</li>');
    expect(page).toContain('<li>listing_viewer</li>');
    expect(page).not.toContain('portal_admin');

    const session = await servers.db.one(sql.type(z.object({ method: z.string(), pmSessionId: z.string(), rolesVersion: z.number(), pmUserId: z.string(), tokenHash: z.string() }))`
      SELECT ps.method, ps.pm_session_id AS "pmSessionId", ps.roles_version AS "rolesVersion", pu.pm_user_id AS "pmUserId", ps.token_hash AS "tokenHash"
      FROM portal_sessions ps JOIN portal_users pu ON pu.id = ps.portal_user_id WHERE pu.pm_user_id = ${pm.user.id}`);
    expect(session).toMatchObject({ method: 'sso_token', pmSessionId: pm.sessionId, rolesVersion: 1, pmUserId: pm.user.id });
    // Only the hash of the session token is stored.
    expect(session.tokenHash).not.toBe(browser.cookies.get('portal_session'));
    const login = (await servers.auditRows('SsoLogin')).find((row) => row.userId === pm.user.id)!;
    expect(login.clientId).toBe(servers.config.sso.portal.clientId);
    expect(login.details).toMatchObject({ method: 'sso_token', sid: pm.sessionId, roles: ['listing_editor', 'listing_viewer'] });
  });

  it("redeems the token the PM app's token exchange issues (POST /api/v1/sso/token)", async () => {
    const pm = await servers.signInPmUser({ roles: ['viewer'] });
    const exchange = await fetch(`${servers.api.url}/api/v1/sso/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie: `pm_session=${pm.browser.cookies.get('pm_session')}` },
      body: JSON.stringify({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', audience: servers.config.sso.portal.clientId }),
    });
    expect(exchange.status).toBe(200);
    const { access_token: ssoToken } = (await exchange.json()) as { access_token: string };
    const response = await servers.redeemApi(ssoToken);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ user: { pmUserId: pm.user.id }, roles: ['listing_viewer'] });
  });

  it('answers the session token, user and roles to an API consumer, and the token opens /api/v1/portal/me', async () => {
    const pm = await servers.signInPmUser({ roles: ['owner'] });
    const response = await servers.redeemApi(await servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId }));
    expect(response.status).toBe(200);
    const body = (await response.json()) as { sessionToken: string; expiresAt: string; user: { pmUserId: string; email: string }; roles: string[] };
    expect(body.user).toMatchObject({ pmUserId: pm.user.id, email: pm.user.email });
    expect(body.roles).toEqual(['listing_editor', 'portal_admin']);
    expect(response.headers.getSetCookie().some((header) => header.startsWith('portal_session='))).toBe(true);

    const me = await fetch(`${servers.url}/api/v1/portal/me`, { headers: { authorization: `Bearer ${body.sessionToken}` } });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ user: { pmUserId: pm.user.id }, roles: ['listing_editor', 'portal_admin'], session: { method: 'sso_token' } });
  });

  it('links a PM user to one portal account by their id, and never to a portal-only account of the same email', async () => {
    const pm = await servers.signInPmUser();
    const portalOnly = await createPortalUser(servers.db, { email: pm.user.email, displayName: 'Someone else', password: 'portal-only password 1' });
    for (let attempt = 0; attempt < 2; attempt += 1) {
      expect((await servers.redeemApi(await servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId }))).status).toBe(200);
    }
    const accounts = await servers.db.any(sql.type(z.object({ id: z.string(), pmUserId: z.string().nullable() }))`
      SELECT id, pm_user_id AS "pmUserId" FROM portal_users WHERE email = ${pm.user.email} ORDER BY created_at`);
    expect(accounts).toHaveLength(2);
    expect(accounts[0]).toEqual({ id: portalOnly.id, pmUserId: null });
    expect(accounts[1]!.pmUserId).toBe(pm.user.id);
  });

  it('refuses a replayed token with a clear page, and exactly one of two concurrent redemptions succeeds', async () => {
    const pm = await servers.signInPmUser();
    const browser = servers.browser();
    const token = await boundToken(browser, pm);
    const [first, second] = await Promise.all([browser.get(`/sso/redeem?sso_token=${token}`), browser.get(`/sso/redeem?sso_token=${token}`)]);
    expect([first!.status, second!.status].sort()).toEqual([303, 401]);
    const replay = first!.status === 401 ? first! : second!;
    expect(replay.headers.get('content-type')).toMatch(/text\/html/);
    expect(await replay.text()).toContain('This sign-in link has already been used');
    // Its binding cookie is gone with the first use: the same link again is from no browser of the token's.
    const again = await browser.get(`/sso/redeem?sso_token=${token}`);
    expect(again.status).toBe(403);
    expect(await again.text()).toContain('Start again from the PM app');

    const raced = await servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId });
    const answers = await Promise.all([servers.redeemApi(raced), servers.redeemApi(raced), servers.redeemApi(raced)]);
    expect(answers.map((answer) => answer.status).sort()).toEqual([200, 401, 401]);
    const refused = await Promise.all(answers.filter((answer) => answer.status === 401).map((answer) => answer.json()));
    expect(refused).toEqual([expect.objectContaining({ error: 'replayed' }), expect.objectContaining({ error: 'replayed' })]);
    const replays = (await servers.auditRows('SsoTokenRejected')).filter((row) => row.details.reason === 'replayed' && row.userId === pm.user.id);
    expect(replays).toHaveLength(3);
    expect(await portalSessionsOf(pm.user.id)).toHaveLength(2);
    expect(replays[0]!.clientId).toBe(servers.config.sso.portal.clientId);
  });

  it("refuses a link with a token minted for another browser (login CSRF): nothing is opened, the victim's session stays, and the refusal is audited", async () => {
    // The attacker runs the button's flow in their own browser and keeps the link instead of following it.
    const attacker = await servers.signInPmUser();
    const attackerBrowser = servers.browser();
    const attackersLink = `/sso/redeem?sso_token=${await boundToken(attackerBrowser, attacker)}`;
    // The victim is signed in to the portal and has just started a sign-in of their own.
    const victim = await servers.signInPmUser();
    const victimBrowser = servers.browser();
    expect((await victimBrowser.get(`/sso/redeem?sso_token=${await boundToken(victimBrowser, victim)}`)).status).toBe(303);
    const victimCookie = victimBrowser.cookies.get('portal_session');
    await servers.handoff(victimBrowser);
    const before = (await servers.auditRows('SsoTokenRejected')).length;

    const lured = await victimBrowser.get(attackersLink);
    expect(lured.status).toBe(403);
    expect(await lured.text()).toContain('This sign-in link was not started in this browser. Start again from the PM app.');
    expect(lured.headers.getSetCookie().some((header) => header.startsWith('portal_session='))).toBe(false);
    expect(victimBrowser.cookies.get('portal_session')).toBe(victimCookie);
    expect(await portalSessionsOf(attacker.user.id)).toEqual([]);
    expect(await portalSessionsOf(victim.user.id)).toEqual([expect.objectContaining({ endedReason: null })]);
    expect((await servers.auditRows('SsoTokenRejected')).slice(before)).toEqual([
      expect.objectContaining({ userId: attacker.user.id, details: expect.objectContaining({ method: 'sso_token', reason: 'browser_mismatch', sid: attacker.sessionId }) }),
    ]);
    // Nor was the attacker's token used up: it still works in the browser it was made for.
    expect((await attackerBrowser.get(attackersLink)).status).toBe(303);
  });

  it('takes an unbound token (the token exchange’s) only at the JSON API, and a bound one only from its browser', async () => {
    const pm = await servers.signInPmUser();
    const unbound = await servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId });
    const browser = servers.browser();
    await servers.handoff(browser);
    const inBrowser = await browser.get(`/sso/redeem?sso_token=${unbound}`);
    expect(inBrowser.status).toBe(403);

    const bound = await boundToken(servers.browser(), pm);
    const atApi = await servers.redeemApi(bound);
    expect(atApi.status).toBe(403);
    expect(await atApi.json()).toMatchObject({ error: 'browser_mismatch', message: expect.stringContaining('POST /api/v1/sso/token') });
    expect(await portalSessionsOf(pm.user.id)).toEqual([]);
    expect((await servers.redeemApi(unbound)).status).toBe(200);
  });

  it('a new sign-in in a browser that holds a live portal session replaces it; the PM session it came from lives on', async () => {
    const pm = await servers.signInPmUser();
    const browser = servers.browser();
    expect((await browser.get(`/sso/redeem?sso_token=${await boundToken(browser, pm)}`)).status).toBe(303);
    const [first] = await portalSessionsOf(pm.user.id);
    expect((await browser.get(`/sso/redeem?sso_token=${await boundToken(browser, pm)}`)).status).toBe(303);

    const sessions = await portalSessionsOf(pm.user.id);
    expect(sessions).toEqual([{ id: first!.id, endedReason: 'replaced' }, expect.objectContaining({ endedReason: null })]);
    expect((await browser.get('/api/v1/portal/me')).status).toBe(200);
    expect((await pm.browser.get('/api/v1/auth/me')).status).toBe(200);
    expect((await servers.auditRows('SsoLogout')).filter((row) => row.details.portalSessionId === first!.id)).toEqual([
      expect.objectContaining({ userId: pm.user.id, actorType: 'user', details: expect.objectContaining({ reason: 'replaced', initiatedBy: 'replaced', sid: pm.sessionId }) }),
    ]);
  });

  it('refuses expired, wrong-audience, wrongly signed and malformed tokens, each with its audited reason', async () => {
    const pm = await servers.signInPmUser();
    const ids = { userId: pm.user.id, sessionId: pm.sessionId };
    // The api-server's kid with another key: an unknown kid is only refused once the key set was fetched for it.
    const strangerKey = { kid: (await servers.authorizationServerKeys.activeKey()).kid, alg: 'RS256' as const, privateKey: (await generateKeyPair('RS256')).privateKey };
    const cases = [
      { token: await servers.mintSsoToken(ids, { now: new Date(Date.now() - 120_000) }), status: 401, reason: 'expired' },
      { token: await servers.mintSsoToken(ids, { audience: 'another-client' }), status: 401, reason: 'wrong_audience' },
      { token: await servers.mintSsoToken(ids, { key: strangerKey }), status: 401, reason: 'bad_signature' },
      { token: 'not-a-jwt', status: 400, reason: 'malformed' },
    ];
    for (const { token, status, reason } of cases) {
      const before = (await rejectionReasons()).length;
      const response = await servers.redeemApi(token);
      expect(response.status, reason).toBe(status);
      expect(await response.json()).toMatchObject({ error: reason });
      expect((await rejectionReasons()).slice(before)).toEqual([reason]);
    }
    // The browser link says what happened too.
    const page = await servers.browser().get(`/sso/redeem?sso_token=${cases[0]!.token}`);
    expect(page.status).toBe(401);
    expect(await page.text()).toContain('This sign-in link has expired');
    expect((await servers.browser().get('/sso/redeem')).status).toBe(400);
    // None of them opened a session.
    const sessions = await servers.db.oneFirst(sql.type(z.object({ count: z.number() }))`
      SELECT count(*)::int AS count FROM portal_sessions ps JOIN portal_users pu ON pu.id = ps.portal_user_id WHERE pu.pm_user_id = ${pm.user.id}`);
    expect(sessions).toBe(0);
  });

  it('refuses a token of a disabled user and of a PM session that has ended', async () => {
    const disabled = await servers.signInPmUser();
    const disabledToken = await servers.mintSsoToken({ userId: disabled.user.id, sessionId: disabled.sessionId });
    await servers.api.db.query(sql.unsafe`UPDATE users SET disabled_at = now() WHERE id = ${disabled.user.id}`);
    const refusedDisabled = await servers.redeemApi(disabledToken);
    expect(refusedDisabled.status).toBe(401);
    expect(await refusedDisabled.json()).toMatchObject({ error: 'user_disabled' });

    const loggedOut = await servers.signInPmUser();
    const portalBrowser = servers.browser();
    const loggedOutToken = await boundToken(portalBrowser, loggedOut);
    await loggedOut.browser.post('/api/v1/auth/logout', {});
    const page = await portalBrowser.get(`/sso/redeem?sso_token=${loggedOutToken}`);
    expect(page.status).toBe(401);
    expect(await page.text()).toContain('Your PM app session has ended');

    const rows = await servers.auditRows('SsoTokenRejected');
    expect(rows.find((row) => row.userId === disabled.user.id)?.details).toMatchObject({ reason: 'user_disabled', sid: disabled.sessionId });
    expect(rows.find((row) => row.userId === loggedOut.user.id)?.details).toMatchObject({ reason: 'pm_session_ended', sid: loggedOut.sessionId });
  });

  it("answers 503 when the api-server's keys cannot be fetched, and the token still works afterwards", async () => {
    const pm = await servers.signInPmUser();
    const token = await servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId });
    const cutOff = await servers.otherPortal({ apiServerKeys: apiServerKeySet(`http://127.0.0.1:${await freePort()}`, { timeoutMs: servers.config.sso.portal.apiServerTimeoutMs }) });
    try {
      const page = await cutOff.inject({ url: `/sso/redeem?sso_token=${token}` });
      expect(page.statusCode).toBe(503);
      expect(page.headers['retry-after']).toBeDefined();
      expect(page.body).toContain('try again');
      const api = await cutOff.inject({ method: 'POST', url: '/api/v1/sso/redeem', payload: { sso_token: token } });
      expect(api.statusCode).toBe(503);
      expect(api.json()).toMatchObject({ error: 'temporarily_unavailable' });
    } finally {
      await cutOff.close();
    }
    expect((await servers.redeemApi(token)).status).toBe(200);
  });

  it('keeps the sign-in when the SSO session workflow cannot be started, and records no start', async () => {
    const pm = await servers.signInPmUser();
    const response = await servers.redeemApi(await servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId }));
    expect(response.status).toBe(200);
    const started = await servers.db.oneFirst(sql.type(z.object({ started: z.boolean() }))`
      SELECT bool_or(ps.workflow_started_at IS NOT NULL) AS started FROM portal_sessions ps JOIN portal_users pu ON pu.id = ps.portal_user_id
      WHERE pu.pm_user_id = ${pm.user.id}`);
    expect(started).toBe(false);
  });
});
