import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { sql } from 'slonik';
import { hashBearerValue, randomToken } from '../../platform/secrets';
import { verifySsoToken } from '../../platform/sso/sso-tokens';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { TestBrowser, parseForm } from '../helpers/oauth-browser';
import { allAuditText, auditRows, PORTAL_CLIENT_ID, PORTAL_URL, signInPm, SSO_ENVIRONMENT, type PmSignIn } from '../helpers/sso-pm';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const REQUESTS_PER_MINUTE = 12;

/**
 * The PM app's half of the one-click SSO: the RFC 8693-shaped SSO token for the signed-in PM user, and
 * the "Open Reality Portal" button that sends the browser to the portal with one.
 */
describe('SSO token for the Reality Portal', () => {
  let server: OAuthTestServer;
  let jwks: ReturnType<typeof createRemoteJWKSet>;

  beforeAll(async () => {
    server = await startOAuthTestServer({ ...SSO_ENVIRONMENT, SSO_TOKEN_REQUESTS_PER_MINUTE: String(REQUESTS_PER_MINUTE) });
    jwks = createRemoteJWKSet(new URL(`${server.url}/oauth/jwks`));
  });

  afterAll(async () => {
    await server?.close();
  });

  let userCount = 0;
  async function signedInUser(): Promise<PmSignIn & { userId: string; email: string }> {
    userCount += 1;
    const user = await server.createUser(`sso-token-${userCount}@example.com`);
    return { ...(await signInPm(server, user.email, user.password)), userId: user.id, email: user.email };
  }

  const exchange = (body: Record<string, string>, headers: Record<string, string> = {}, form = false) =>
    fetch(`${server.url}/api/v1/sso/token`, {
      method: 'POST',
      headers: { 'content-type': form ? 'application/x-www-form-urlencoded' : 'application/json', ...headers },
      body: form ? new URLSearchParams(body).toString() : JSON.stringify(body),
    });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const validRequest = { grant_type: TOKEN_EXCHANGE, audience: PORTAL_CLIENT_ID, requested_token_type: JWT_TOKEN_TYPE };

  describe('POST /api/v1/sso/token', () => {
    it('answers an RFC 8693 response with a 60 s SSO token for the portal, signed with the keys of /oauth/jwks, and audits it', async () => {
      const user = await signedInUser();
      const response = await exchange(validRequest, bearer(user.sessionToken));
      expect(response.status).toBe(200);
      expect(response.headers.get('cache-control')).toBe('no-store');
      const body = (await response.json()) as Record<string, unknown>;
      expect(body).toEqual({ access_token: expect.any(String), issued_token_type: JWT_TOKEN_TYPE, token_type: 'N_A', expires_in: 60 });
      const token = body.access_token as string;

      expect(decodeProtectedHeader(token).typ).toBe('sso+jwt');
      const { payload } = await jwtVerify(token, jwks, { issuer: server.url, audience: PORTAL_CLIENT_ID, typ: 'sso+jwt', algorithms: ['RS256'] });
      expect(payload).toMatchObject({ sub: user.userId, sid: user.sessionId, aud: PORTAL_CLIENT_ID });
      expect(payload.exp! - payload.iat!).toBe(60);
      expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
      // Ids only: nothing personal travels in the URL the button builds from it.
      expect(Object.keys(payload).sort()).toEqual(['aud', 'exp', 'iat', 'iss', 'jti', 'sid', 'sub']);
      // What the portal runs on redemption accepts it.
      expect(await verifySsoToken(token, jwks, { issuer: server.url, audience: PORTAL_CLIENT_ID })).toMatchObject({ ok: true, claims: { sub: user.userId } });

      const issued = (await auditRows(server.db, 'SsoTokenIssued')).filter((row) => row.userId === user.userId);
      expect(issued).toEqual([
        expect.objectContaining({ outcome: 'success', actorType: 'user', clientId: PORTAL_CLIENT_ID, details: expect.objectContaining({ sid: user.sessionId, jti: payload.jti, requestedBy: 'token_exchange' }) }),
      ]);
      expect(await allAuditText(server.db)).not.toContain(token);
    });

    it('takes a form-encoded request, and requested_token_type may be omitted', async () => {
      const user = await signedInUser();
      const response = await exchange({ grant_type: TOKEN_EXCHANGE, audience: PORTAL_CLIENT_ID }, bearer(user.sessionToken), true);
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ issued_token_type: JWT_TOKEN_TYPE, token_type: 'N_A' });
    });

    it('refuses any audience but the portal with invalid_target, and other malformed exchanges with their RFC 6749 errors', async () => {
      const user = await signedInUser();
      const cases: Array<[Record<string, string>, number, string, RegExp]> = [
        [{ ...validRequest, audience: 'another-client' }, 400, 'invalid_target', /Reality Portal/],
        [{ ...validRequest, resource: 'https://elsewhere.example/' }, 400, 'invalid_target', /resource/],
        [{ grant_type: TOKEN_EXCHANGE }, 400, 'invalid_request', /audience is required/],
        [{ ...validRequest, grant_type: 'client_credentials' }, 400, 'unsupported_grant_type', /token-exchange/],
        [{ audience: PORTAL_CLIENT_ID }, 400, 'invalid_request', /grant_type is required/],
        [{ ...validRequest, requested_token_type: 'urn:ietf:params:oauth:token-type:access_token' }, 400, 'invalid_request', /requested_token_type/],
        [{ ...validRequest, subject_token: 'anything', subject_token_type: JWT_TOKEN_TYPE }, 400, 'invalid_request', /PM session is the subject/],
        [{ ...validRequest, actor_token: 'anything' }, 400, 'invalid_request', /subject/],
        [{ ...validRequest, scope: 'openid' }, 400, 'invalid_scope', /no scope/],
      ];
      for (const [body, status, error, description] of cases) {
        const response = await exchange(body, bearer(user.sessionToken));
        expect(response.status, JSON.stringify(body)).toBe(status);
        const answer = (await response.json()) as { error: string; error_description: string };
        expect(answer.error, JSON.stringify(body)).toBe(error);
        expect(answer.error_description).toMatch(description);
      }
      expect((await auditRows(server.db, 'SsoTokenIssued')).filter((row) => row.userId === user.userId)).toEqual([]);
    });

    it('answers 401 without a live PM session: none, unknown, idle, expired, or of a disabled user', async () => {
      expect((await exchange(validRequest)).status).toBe(401);
      const unknown = await exchange(validRequest, bearer('not-a-session'));
      expect(unknown.status).toBe(401);
      expect(await unknown.json()).toMatchObject({ error: 'invalid_token' });

      const idle = await signedInUser();
      await server.db.query(sql.unsafe`
        UPDATE user_sessions SET last_seen_at = now() - make_interval(secs => ${server.config.sso.sessionIdleSeconds + 1}) WHERE id = ${idle.sessionId}`);
      expect((await exchange(validRequest, bearer(idle.sessionToken))).status).toBe(401);

      const expired = await signedInUser();
      await server.db.query(sql.unsafe`UPDATE user_sessions SET expires_at = now() - interval '1 second' WHERE id = ${expired.sessionId}`);
      expect((await exchange(validRequest, bearer(expired.sessionToken))).status).toBe(401);

      const disabled = await signedInUser();
      expect((await exchange(validRequest, bearer(disabled.sessionToken))).status).toBe(200);
      await server.db.query(sql.unsafe`UPDATE users SET disabled_at = now() WHERE id = ${disabled.userId}`);
      expect((await exchange(validRequest, bearer(disabled.sessionToken))).status).toBe(401);
    });

    it(`limits one user to SSO_TOKEN_REQUESTS_PER_MINUTE (${REQUESTS_PER_MINUTE}) tokens a minute, without touching another user`, async () => {
      const busy = await signedInUser();
      for (let request = 0; request < REQUESTS_PER_MINUTE; request += 1) expect((await exchange(validRequest, bearer(busy.sessionToken))).status).toBe(200);
      const limited = await exchange(validRequest, bearer(busy.sessionToken));
      expect(limited.status).toBe(429);
      expect(await limited.json()).toMatchObject({ error: 'temporarily_unavailable' });
      const other = await signedInUser();
      expect((await exchange(validRequest, bearer(other.sessionToken))).status).toBe(200);
    });
  });

  describe('the "Open Reality Portal" button (/sso/reality-portal)', () => {
    async function signedInBrowser() {
      userCount += 1;
      const user = await server.createUser(`sso-button-${userCount}@example.com`);
      const browser = new TestBrowser(server.url);
      const signIn = await browser.signIn(user.email, user.password, '/sso/reality-portal');
      expect(signIn.status).toBe(303);
      expect(signIn.headers.get('location')).toBe('/sso/reality-portal');
      return { browser, user };
    }

    it('sends a browser that is not signed in to the login page, which comes back to the button', async () => {
      const response = await new TestBrowser(server.url).get('/sso/reality-portal');
      expect(response.status).toBe(303);
      expect(response.headers.get('location')).toBe('/login?return_to=%2Fsso%2Freality-portal');
    });

    /** What the portal's /sso/handoff does: a binding cookie of its own, its hash to the PM app. */
    const portalBinding = () => hashBearerValue(randomToken());
    const tokenStep = (query: Record<string, string>) => `/sso/reality-portal/token?${new URLSearchParams(query)}`;
    const issuedTo = async (userId: string) => (await auditRows(server.db, 'SsoTokenIssued')).filter((row) => row.userId === userId);

    /** Presses the button in `browser`; answers the press its redirect to the portal's handoff carries. */
    async function pressButton(browser: TestBrowser): Promise<string> {
      const pressed = await browser.submit(await (await browser.get('/sso/reality-portal')).text());
      expect(pressed.status).toBe(303);
      return new URL(pressed.headers.get('location')!).searchParams.get('press')!;
    }

    /** The token step answered the button page, and minted nothing. */
    async function expectButtonPage(response: Response, email: string) {
      expect(response.status).toBe(200);
      expect(response.headers.get('location')).toBeNull();
      const page = await response.text();
      expect(page).toContain(`Signed in as <strong>${email}</strong>`);
      expect(parseForm(page)).toMatchObject({ action: '/sso/reality-portal', method: 'post', buttons: [expect.objectContaining({ label: 'Open Reality Portal' })] });
      expect(page).not.toContain('sso_token');
    }

    it('shows who is signed in and, on the press of the button, sends the browser to the portal, whose handoff comes back for a token bound to that browser', async () => {
      const { browser, user } = await signedInBrowser();
      const pageResponse = await browser.get('/sso/reality-portal');
      expect(pageResponse.status).toBe(200);
      // The form's redirect goes on to the portal: the page's CSP must allow it, and nothing else.
      expect(pageResponse.headers.get('content-security-policy')).toContain(`form-action 'self' ${PORTAL_URL};`);
      const page = await pageResponse.text();
      expect(page).toContain(`Signed in as <strong>${user.email}</strong>`);
      const form = parseForm(page);
      expect(form).toMatchObject({ action: '/sso/reality-portal', method: 'post', buttons: [expect.objectContaining({ label: 'Open Reality Portal' })] });

      const pressed = await browser.submit(page);
      expect(pressed.status).toBe(303);
      const handoff = new URL(pressed.headers.get('location')!);
      expect(`${handoff.origin}${handoff.pathname}`).toBe(`${PORTAL_URL}/sso/handoff`);
      // The press: a cookie for the token step only, and its hash in the redirect chain, for the handoff to bring back.
      const pressCookie = pressed.headers.getSetCookie().find((header) => header.startsWith('pm_sso_press='))!;
      expect(pressCookie).toMatch(/HttpOnly/i);
      expect(pressCookie).toMatch(/SameSite=Lax/i);
      expect(pressCookie).toMatch(/Path=\/sso\/reality-portal\/token(;|$)/);
      expect(pressCookie).toMatch(new RegExp(`Max-Age=${server.config.lifetimes.oauthStateSeconds}`));
      const press = handoff.searchParams.get('press')!;
      expect(press).toBe(hashBearerValue(browser.cookies.get('pm_sso_press')!));
      // The press mints nothing: the token waits for the portal to name the browser.
      expect(await issuedTo(user.id)).toEqual([]);

      const binding = portalBinding();
      const step = tokenStep({ binding, press });
      const minted = await browser.get(step);
      expect(minted.status).toBe(303);
      expect(minted.headers.get('cache-control')).toBe('no-store');
      expect(minted.headers.get('referrer-policy')).toBe('no-referrer');
      const location = new URL(minted.headers.get('location')!);
      expect(`${location.origin}${location.pathname}`).toBe(`${PORTAL_URL}/sso/redeem`);
      const token = location.searchParams.get('sso_token')!;
      const verified = await verifySsoToken(token, jwks, { issuer: server.url, audience: PORTAL_CLIENT_ID });
      expect(verified).toMatchObject({ ok: true, claims: { sub: user.id, bnd: binding } });
      const sessionId = await server.db.oneFirst(sql.unsafe`SELECT id FROM user_sessions WHERE user_id = ${user.id} AND revoked_at IS NULL`);
      expect(verified.ok && verified.claims.sid).toBe(sessionId);
      expect((await issuedTo(user.id)).map((row) => row.details)).toEqual([expect.objectContaining({ requestedBy: 'button', browserBound: true, sid: sessionId })]);

      // The press is used up: the same step again (a reload, a copied URL) mints no second token.
      expect(browser.cookies.has('pm_sso_press')).toBe(false);
      await expectButtonPage(await browser.get(step), user.email);
      expect(await issuedTo(user.id)).toHaveLength(1);
    });

    it("mints nothing for a link from another site (a binding of the attacker's browser), and shows the button page instead", async () => {
      // The attacker's own handoff and press, in the attacker's own browser.
      const attacker = await signedInBrowser();
      const attackersPress = await pressButton(attacker.browser);
      const attackersBinding = portalBinding();

      // The victim, signed in to the PM app, is lured to the token step (a top-level GET: the session cookie comes along).
      const victim = await signedInBrowser();
      for (const query of [{ binding: attackersBinding }, { binding: attackersBinding, press: attackersPress }] as Record<string, string>[]) {
        await expectButtonPage(await victim.browser.get(tokenStep(query)), victim.user.email);
      }
      expect(await issuedTo(victim.user.id)).toEqual([]);

      // Nor while the victim's own press is under way: the lure does not know its hash, and does not use it up.
      const victimsPress = await pressButton(victim.browser);
      await expectButtonPage(await victim.browser.get(tokenStep({ binding: attackersBinding, press: attackersPress })), victim.user.email);
      await expectButtonPage(await victim.browser.get(tokenStep({ binding: attackersBinding })), victim.user.email);
      expect(await issuedTo(victim.user.id)).toEqual([]);
      const victimsBinding = portalBinding();
      const own = await victim.browser.get(tokenStep({ binding: victimsBinding, press: victimsPress }));
      expect(own.status).toBe(303);
      const verified = await verifySsoToken(new URL(own.headers.get('location')!).searchParams.get('sso_token')!, jwks, { issuer: server.url, audience: PORTAL_CLIENT_ID });
      expect(verified).toMatchObject({ ok: true, claims: { sub: victim.user.id, bnd: victimsBinding } });
    });

    it('sends a browser without a PM session from the token step to the login page, which comes back to the same step and its press', async () => {
      const { browser, user } = await signedInBrowser();
      const press = await pressButton(browser);
      // The PM session cookie is gone by the time the portal sends the browser back.
      browser.cookies.delete('pm_session');
      const step = tokenStep({ binding: portalBinding(), press });
      const unsigned = await browser.get(step);
      expect(unsigned.status).toBe(303);
      expect(unsigned.headers.get('location')).toBe(`/login?${new URLSearchParams({ return_to: step })}`);

      const signedIn = await browser.signIn(user.email, user.password, step);
      expect(signedIn.headers.get('location')).toBe(step);
      const minted = await browser.get(step);
      expect(minted.status).toBe(303);
      expect(minted.headers.get('location')).toMatch(new RegExp(`^${PORTAL_URL}/sso/redeem\\?sso_token=`));
    });

    it('refuses a token step without a well-formed binding, and mints nothing', async () => {
      const { browser, user } = await signedInBrowser();
      for (const query of ['', '?binding=short', `?binding=${'a'.repeat(42)}!`]) {
        const response = await browser.get(`/sso/reality-portal/token${query}`);
        expect(response.status, query).toBe(400);
        expect(await response.text()).toContain('Open the Reality Portal again from the PM app');
      }
      expect((await auditRows(server.db, 'SsoTokenIssued')).filter((row) => row.userId === user.id)).toEqual([]);
    });

    it('refuses a press without the page\'s CSRF token, or from another site, and mints nothing', async () => {
      const { browser, user } = await signedInBrowser();
      const page = await (await browser.get('/sso/reality-portal')).text();
      const withoutToken = await browser.post('/sso/reality-portal', {});
      expect(withoutToken.status).toBe(403);
      expect(withoutToken.headers.get('location')).toBeNull();
      expect(await withoutToken.text()).toContain('This page expired');

      const fresh = parseForm(await (await browser.get('/sso/reality-portal')).text()).fields;
      const cookie = [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
      const crossSite = await fetch(browser.url('/sso/reality-portal'), {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'cross-site' },
        body: new URLSearchParams(fresh).toString(),
      });
      expect(crossSite.status).toBe(403);
      expect(page).toContain('csrf_token');
      expect((await auditRows(server.db, 'SsoTokenIssued')).filter((row) => row.userId === user.id)).toEqual([]);
    });

    it('answers a malformed press or token step (a body that is no form, a NUL in the query) with an HTML error page, signed in or not', async () => {
      const { browser } = await signedInBrowser();
      const cookie = [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
      for (const headers of [{ cookie }, {}] as Array<Record<string, string>>) {
        const press = await fetch(`${server.url}/sso/reality-portal`, { method: 'POST', redirect: 'manual', headers: { ...headers, 'content-type': 'text/plain' }, body: 'not a form' });
        const step = await fetch(`${server.url}/sso/reality-portal/token?binding=%00`, { redirect: 'manual', headers });
        for (const response of [press, step]) {
          expect(response.status).toBe(400);
          expect(response.headers.get('content-type')).toMatch(/^text\/html/);
          expect(await response.text()).toContain('Reality Portal');
        }
      }
    });

    it('does not take a Bearer session token for a browser sign-in: the press goes to the login page', async () => {
      const user = await signedInUser();
      const response = await fetch(`${server.url}/sso/reality-portal`, {
        method: 'POST',
        redirect: 'manual',
        headers: { ...bearer(user.sessionToken), 'content-type': 'application/x-www-form-urlencoded' },
        body: '',
      });
      expect(response.status).toBe(303);
      expect(response.headers.get('location')).toBe('/login?return_to=%2Fsso%2Freality-portal');
      const step = await fetch(`${server.url}/sso/reality-portal/token?binding=${hashBearerValue(randomToken())}`, { redirect: 'manual', headers: bearer(user.sessionToken) });
      expect(step.status).toBe(303);
      expect(step.headers.get('location')).toMatch(/^\/login\?return_to=/);
      expect((await auditRows(server.db, 'SsoTokenIssued')).filter((row) => row.userId === user.userId)).toEqual([]);
    });

    it(`limits the token step to SSO_TOKEN_REQUESTS_PER_MINUTE (${REQUESTS_PER_MINUTE}) a minute per user`, async () => {
      const { browser } = await signedInBrowser();
      const pressAndStep = async () => browser.get(tokenStep({ binding: portalBinding(), press: await pressButton(browser) }));
      for (let request = 0; request < REQUESTS_PER_MINUTE; request += 1) expect((await pressAndStep()).status).toBe(303);
      const limited = await pressAndStep();
      expect(limited.status).toBe(429);
      expect(await limited.text()).toContain('Too many attempts');
    });
  });

  it('answers 404 on both paths while single sign-on is not configured (no REALITY_OIDC_CLIENT_SECRET)', async () => {
    const plain = await startOAuthTestServer();
    try {
      const user = await plain.createUser('no-sso@example.com');
      const { sessionToken } = await signInPm(plain, user.email, user.password);
      const response = await fetch(`${plain.url}/api/v1/sso/token`, { method: 'POST', headers: { 'content-type': 'application/json', ...bearer(sessionToken) }, body: JSON.stringify(validRequest) });
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: 'invalid_target', error_description: expect.stringMatching(/not configured/) });
      const page = await fetch(`${plain.url}/sso/reality-portal`, { redirect: 'manual' });
      expect(page.status).toBe(404);
      expect(await page.text()).toContain('not configured');
    } finally {
      await plain.close();
    }
  });
});
