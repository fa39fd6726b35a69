import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { authorizePath, TestBrowser } from '../helpers/oauth-browser';

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

  it('sends a visitor who is not signed in to the login page with a return URL', async () => {
    const { path } = authorizePath({ clientId });
    const response = await anonymous().get(path);
    expect(response.status).toBe(303);
    const location = new URL(response.headers.get('location')!, server.url);
    expect(location.origin).toBe(server.url);
    expect(location.pathname).toBe('/login');
    expect(location.searchParams.get('return_to')).toBe(path);
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
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
