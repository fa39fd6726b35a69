import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { authorizePath, parseForm, TestBrowser } from '../helpers/oauth-browser';
import { auditRows } from './token-helpers';

/** GET /oauth/authorize: what is shown as a page, what is redirected, and what every answer carries. */
describe('authorization endpoint', () => {
  let server: OAuthTestServer;
  let clientId: string;
  let signedIn: TestBrowser;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    clientId = (await server.createClient()).client.id;
    const user = await server.createUser('authorize@example.com');
    signedIn = new TestBrowser(server.url);
    expect((await signedIn.signIn(user.email, user.password)).status).toBe(303);
  });

  afterAll(async () => {
    await server?.close();
  });

  const anonymous = () => new TestBrowser(server.url);

  async function expectErrorPage(response: Response) {
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(response.headers.get('x-frame-options')).toBe('DENY');
    expect(response.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    const page = await response.text();
    expect(page).not.toContain('<script');
    return page;
  }

  function redirectParams(response: Response) {
    expect(response.status).toBe(303);
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    const location = new URL(response.headers.get('location')!);
    return { location, params: Object.fromEntries(location.searchParams) };
  }

  it('shows an error page, never a redirect, for a missing or unknown client', async () => {
    await expectErrorPage(await anonymous().get(authorizePath({ clientId, extra: { client_id: undefined } }).path));
    await expectErrorPage(await anonymous().get(authorizePath({ clientId: 'c_unknown' }).path));
  });

  it('shows an error page for a revoked client', async () => {
    const { client } = await server.createClient();
    await server.db.query(sql.unsafe`UPDATE oauth_clients SET revoked_at = now() WHERE id = ${client.id}`);
    await expectErrorPage(await signedIn.get(authorizePath({ clientId: client.id }).path));
  });

  it.each([
    ['missing', undefined],
    ['another host', 'https://evil.example/callback'],
    ['a longer path (prefix trick)', 'https://client.example/callback/evil'],
    ['a different case', 'https://CLIENT.example/callback'],
    ['a path in another case', 'https://client.example/Callback'],
    ['a trailing slash', 'https://client.example/callback/'],
    ['an added query', 'https://client.example/callback?next=https://evil.example'],
    ['an added fragment', 'https://client.example/callback#x'],
    ['http instead of https', 'http://client.example/callback'],
    ['an explicit port', 'https://client.example:443/callback'],
    ['user info', 'https://client.example@evil.example/callback'],
  ])('shows an error page for a redirect_uri that is %s', async (_label, redirectUri) => {
    const { path } = authorizePath({ clientId, extra: { redirect_uri: redirectUri } });
    for (const browser of [anonymous(), signedIn]) await expectErrorPage(await browser.get(path));
  });

  it('shows an error page for repeated parameters', async () => {
    const { path } = authorizePath({ clientId });
    await expectErrorPage(await signedIn.get(`${path}&redirect_uri=${encodeURIComponent('https://evil.example/')}`));
  });

  it('redirects unsupported_response_type with state and iss', async () => {
    for (const responseType of ['token', 'code id_token', 'id_token']) {
      const { path, state } = authorizePath({ clientId, extra: { response_type: responseType } });
      const { location, params } = redirectParams(await signedIn.get(path));
      expect(`${location.origin}${location.pathname}`).toBe('https://client.example/callback');
      expect(params).toMatchObject({ error: 'unsupported_response_type', state, iss: server.url });
      expect(params.code).toBeUndefined();
    }
    const { path, state } = authorizePath({ clientId, extra: { response_type: undefined } });
    expect(redirectParams(await signedIn.get(path)).params).toMatchObject({ error: 'invalid_request', state, iss: server.url });
  });

  it.each([
    ['no code_challenge', { code_challenge: undefined }],
    ['code_challenge_method plain', { code_challenge_method: 'plain' }],
    ['no code_challenge_method (would mean plain)', { code_challenge_method: undefined }],
    ['an unknown method', { code_challenge_method: 'S512' }],
    ['a malformed challenge', { code_challenge: 'too-short' }],
  ])('requires PKCE S256: %s is invalid_request', async (_label, extra) => {
    const { path, state } = authorizePath({ clientId, extra });
    for (const browser of [anonymous(), signedIn]) {
      const { params } = redirectParams(await browser.get(path));
      expect(params).toMatchObject({ error: 'invalid_request', state, iss: server.url });
      expect(params.code).toBeUndefined();
    }
  });

  it.each([['a scope the client may not have', 'properties:write'], ['an unknown scope', 'admin'], ['a malformed scope', 'properties:read "x"']])(
    'answers invalid_scope for %s',
    async (_label, scope) => {
      const { path, state } = authorizePath({ clientId, scope });
      expect(redirectParams(await signedIn.get(path)).params).toMatchObject({ error: 'invalid_scope', state, iss: server.url });
    },
  );

  it('keeps the registered redirect URI query and returns state unchanged', async () => {
    const { client } = await server.createClient({ redirectUris: ['https://client.example/cb?tenant=a'] });
    const state = 'a state with spaces & symbols / ü';
    const { path } = authorizePath({ clientId: client.id, redirectUri: 'https://client.example/cb?tenant=a', state, extra: { response_type: 'token' } });
    const { params } = redirectParams(await signedIn.get(path));
    expect(params).toMatchObject({ tenant: 'a', state, iss: server.url, error: 'unsupported_response_type' });
  });

  /** An anonymous visit: the login redirect and the short return URL it carries. */
  async function loginRedirect(browser: TestBrowser, path: string): Promise<string> {
    const response = await browser.get(path);
    expect(response.status).toBe(303);
    const location = new URL(response.headers.get('location')!, server.url);
    expect(location.origin).toBe(server.url);
    expect(location.pathname).toBe('/login');
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    return location.searchParams.get('return_to')!;
  }

  it('sends a visitor who is not signed in to the login page with a short return URL to the stored request', async () => {
    const { path } = authorizePath({ clientId });
    const returnTo = await loginRedirect(anonymous(), path);
    expect(returnTo).toMatch(/^\/oauth\/authorize\?resume=[0-9a-f-]{36}$/);
    const requestId = new URL(returnTo, server.url).searchParams.get('resume')!;
    const row = await server.db.one(sql.type(z.object({ clientId: z.string(), userId: z.string().nullable(), csrfHash: z.string().nullable() }))`
      SELECT client_id AS "clientId", user_id AS "userId", csrf_hash AS "csrfHash" FROM oauth_authorization_requests WHERE id = ${requestId}`);
    expect(row).toEqual({ clientId, userId: null, csrfHash: null });
  });

  it('resumes a request with a 2000-character state after sign-in, and returns the state unchanged', async () => {
    const user = await server.createUser(`long-state-${Date.now()}@example.com`);
    // 2000 characters that each need percent-encoding: the authorization URL is far longer than /login's 4096 cap.
    const state = 'ü&'.repeat(1000);
    expect(state).toHaveLength(2000);
    const { path } = authorizePath({ clientId, state });
    expect(path.length).toBeGreaterThan(4096);
    const browser = anonymous();
    const returnTo = await loginRedirect(browser, path);
    // Still anonymous: the stored request sends the visitor back to the login page, unchanged.
    expect(await loginRedirect(browser, returnTo)).toBe(returnTo);

    const login = await browser.signIn(user.email, user.password, returnTo);
    expect(login.status).toBe(303);
    expect(login.headers.get('location')).toBe(returnTo);
    const consent = await browser.get(returnTo);
    expect(consent.status).toBe(200);
    const decided = await browser.submit(await consent.text(), {}, 'approve');
    expect(decided.status).toBe(303);
    const params = new URL(decided.headers.get('location')!).searchParams;
    expect(params.get('state')).toBe(state);
    expect(params.get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // A stored request is used once.
    const again = await browser.get(returnTo);
    await expectErrorPage(again);
  });

  it('checks the client again when a stored request is resumed', async () => {
    const { client } = await server.createClient({ redirectUris: ['https://client.example/callback', 'https://client.example/other'] });
    const user = await server.createUser(`resume-${Date.now()}@example.com`);
    const browser = anonymous();
    const revokedLater = await loginRedirect(browser, authorizePath({ clientId: client.id }).path);
    const movedLater = await loginRedirect(browser, authorizePath({ clientId: client.id, redirectUri: 'https://client.example/other' }).path);
    expect((await browser.signIn(user.email, user.password)).status).toBe(303);

    await server.db.query(sql.unsafe`UPDATE oauth_clients SET redirect_uris = '{https://client.example/callback}' WHERE id = ${client.id}`);
    await expectErrorPage(await browser.get(movedLater));
    await server.db.query(sql.unsafe`UPDATE oauth_clients SET revoked_at = now() WHERE id = ${client.id}`);
    await expectErrorPage(await browser.get(revokedLater));
    // Unknown, malformed or mixed with new parameters.
    await expectErrorPage(await browser.get('/oauth/authorize?resume=00000000-0000-4000-8000-000000000000'));
    await expectErrorPage(await browser.get('/oauth/authorize?resume=nope'));
    await expectErrorPage(await browser.get(`${revokedLater}&client_id=${clientId}`));
  });

  it('refuses NUL in any parameter with an error page, never a 500', async () => {
    for (const query of ['client_id=%00', `client_id=${clientId}&state=a%00b`, 'resume=%00']) {
      for (const browser of [anonymous(), signedIn]) {
        const response = await browser.get(`/oauth/authorize?${query}`);
        const page = await expectErrorPage(response);
        expect(page).not.toContain('[object Object]');
      }
    }
    const { path } = authorizePath({ clientId, state: 'a\u0000b' });
    await expectErrorPage(await signedIn.get(path));
  });

  it('audits PKCE and redirect URI attacks (OAuthAuthorizeRejected) with client, reason and address', async () => {
    const { client } = await server.createClient({ name: 'Audited client' });
    const cases: Array<[Record<string, string | undefined>, string]> = [
      [{ code_challenge: undefined }, 'pkce_missing'],
      [{ code_challenge_method: 'plain' }, 'pkce_plain'],
      [{ code_challenge_method: undefined }, 'pkce_plain'],
      [{ redirect_uri: 'https://client.example/callback/evil' }, 'redirect_uri_mismatch'],
      [{ redirect_uri: 'https://CLIENT.example/callback' }, 'redirect_uri_mismatch'],
      [{ redirect_uri: 'https://client.example/Callback' }, 'redirect_uri_mismatch'],
    ];
    for (const [extra] of cases) {
      expect((await signedIn.get(authorizePath({ clientId: client.id, extra }).path)).status).not.toBe(200);
    }
    const rows = (await auditRows(server, 'OAuthAuthorizeRejected')).filter((row) => row.client_id === client.id);
    expect(rows.map((row) => (row.details as { reason: string }).reason)).toEqual(cases.map(([, reason]) => reason));
    for (const row of rows) expect(row).toMatchObject({ outcome: 'failure', ip_address: '127.0.0.1', actor_type: 'user' });
    expect((rows[3]!.details as { redirect_uri: string }).redirect_uri).toBe('https://client.example/callback/evil');
    expect(rows.every((row) => row.user_id !== null)).toBe(true);
  });

  it('never writes a host that is not a DNS name or an IP literal into the policy: such a redirect URI is refused', async () => {
    // Registered before validation refused such hosts (registerClient does not validate).
    for (const host of ["a;b.example", 'a,b.example', "a'b.example"]) {
      const redirectUri = `https://${host}/callback`;
      const { client } = await server.createClient({ redirectUris: [redirectUri] });
      const response = await signedIn.get(authorizePath({ clientId: client.id, redirectUri }).path);
      await expectErrorPage(response);
      expect(response.headers.get('content-security-policy')).not.toContain(host);
    }
  });

  it('puts the redirect URI origin into form-action on the consent page', async () => {
    const response = await signedIn.get(authorizePath({ clientId }).path);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-security-policy')).toContain("form-action 'self' https://client.example;");
    expect(parseForm(await response.text()).action).toBe('/oauth/authorize/decision');
  });

  it('shows the consent page to a signed-in user, without CORS headers even when asked cross-origin', async () => {
    const response = await fetch(`${server.url}${authorizePath({ clientId }).path}`, {
      redirect: 'manual',
      headers: { origin: 'https://evil.example', cookie: [...signedIn.cookies].map(([name, value]) => `${name}=${value}`).join('; ') },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    expect(response.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('adds iss to every redirect it sends to a client', async () => {
    const cases = [
      { response_type: 'token' },
      { code_challenge_method: 'plain' },
      { scope: 'nope' },
      { state: undefined, response_type: 'token' },
    ];
    for (const extra of cases) {
      const { params } = redirectParams(await signedIn.get(authorizePath({ clientId, extra }).path));
      expect(params.iss).toBe(server.url);
    }
    const withoutState = redirectParams(await signedIn.get(authorizePath({ clientId, extra: { state: undefined, response_type: 'token' } }).path));
    expect(withoutState.params.state).toBeUndefined();
  });
});
