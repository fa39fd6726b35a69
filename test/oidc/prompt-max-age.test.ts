import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { signedInBrowser, TestBrowser } from '../helpers/oauth-browser';
import { sessionRevoked } from '../helpers/sso-pm';
import { auditRows, type TestClient } from '../oauth/token-helpers';
import {
  ageSession,
  authorizeThrough,
  browserSession,
  CALLBACK,
  createRelyingParty,
  exchangeCode,
  rpAuthorizePath,
  signInWithOpenId,
  verifiedIdToken,
} from './oidc-helpers';

/** prompt (none, login, consent), max_age and id_token_hint at /oauth/authorize, for every client. */
describe('prompt and max_age', () => {
  let server: OAuthTestServer;
  let client: TestClient;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    client = await createRelyingParty(server);
  });
  afterAll(() => server?.close());

  /** A signed-in user whose grant to the client covers openid: no consent page is needed any more. */
  async function userWithGrant() {
    const signedIn = await signedInBrowser(server);
    const tokens = await signInWithOpenId(server, client, signedIn.browser);
    return { ...signedIn, idToken: tokens.id_token! };
  }

  function callbackParams(response: Response) {
    expect(response.status).toBe(303);
    const location = new URL(response.headers.get('location')!, server.url);
    expect(`${location.origin}${location.pathname}`).toBe(CALLBACK);
    return Object.fromEntries(location.searchParams);
  }

  function loginRedirect(response: Response): string {
    expect(response.status).toBe(303);
    const location = new URL(response.headers.get('location')!, server.url);
    expect(location.pathname).toBe('/login');
    return location.searchParams.get('return_to')!;
  }

  describe('prompt=none', () => {
    it('answers login_required at the redirect URI when nobody is signed in, and audits it', async () => {
      const { path, state } = rpAuthorizePath(client, { extra: { prompt: 'none' } });
      expect(callbackParams(await new TestBrowser(server.url).get(path))).toEqual({
        error: 'login_required',
        error_description: 'the user must sign in',
        state,
        iss: server.url,
      });
      expect((await auditRows(server, 'OAuthAuthorizeRejected')).at(-1)).toMatchObject({ client_id: client.client.id, details: { reason: 'not_signed_in' } });
    });

    it('answers consent_required when the user has not consented', async () => {
      const { browser } = await signedInBrowser(server);
      const { path, state } = rpAuthorizePath(client, { extra: { prompt: 'none' } });
      expect(callbackParams(await browser.get(path))).toMatchObject({ error: 'consent_required', state });
    });

    it('issues a code at once when the user is signed in and has consented', async () => {
      const { browser, user } = await userWithGrant();
      const { path, pkce, state } = rpAuthorizePath(client, { extra: { prompt: 'none', nonce: 'silent' } });
      const params = callbackParams(await browser.get(path));
      expect(params).toMatchObject({ code: expect.any(String), state });
      const answer = await exchangeCode(server, client, new URL(`${CALLBACK}?code=${params.code}`), pkce.verifier);
      const { claims } = await verifiedIdToken(server, answer.body.id_token as string);
      expect(claims).toMatchObject({ sub: user.id, nonce: 'silent', sid: (await browserSession(server, browser)).id });
    });

    it('answers login_required when the sign-in is older than max_age', async () => {
      const { browser } = await userWithGrant();
      await ageSession(server, (await browserSession(server, browser)).id, 120);
      const { path } = rpAuthorizePath(client, { extra: { prompt: 'none', max_age: '60' } });
      expect(callbackParams(await browser.get(path))).toMatchObject({ error: 'login_required' });
      expect((await auditRows(server, 'OAuthAuthorizeRejected')).at(-1)).toMatchObject({ details: { reason: 'max_age_exceeded' } });
      const { path: recent } = rpAuthorizePath(client, { extra: { prompt: 'none', max_age: '3600' } });
      expect(callbackParams(await browser.get(recent))).toMatchObject({ code: expect.any(String) });
    });

    it('checks an id_token_hint: the signed-in user passes, another user gets login_required, a forged one invalid_request', async () => {
      const { browser, idToken } = await userWithGrant();
      const other = await userWithGrant();
      const hinted = (hint: string) => rpAuthorizePath(client, { extra: { prompt: 'none', id_token_hint: hint } }).path;
      expect(callbackParams(await browser.get(hinted(idToken)))).toMatchObject({ code: expect.any(String) });
      expect(callbackParams(await browser.get(hinted(other.idToken)))).toMatchObject({ error: 'login_required' });
      const [header, payload] = idToken.split('.');
      expect(callbackParams(await browser.get(hinted(`${header}.${payload}.AAAA`)))).toMatchObject({ error: 'invalid_request' });
    });
  });

  it.each([
    ['none combined with login', { prompt: 'none login' }],
    ['an unknown prompt value', { prompt: 'select_account' }],
    ['a negative max_age', { max_age: '-1' }],
    ['a fractional max_age', { max_age: '1.5' }],
    ['a max_age that is not a number', { max_age: 'soon' }],
  ])('answers invalid_request at the redirect URI for %s', async (_label, extra) => {
    const { browser } = await signedInBrowser(server);
    const { path, state } = rpAuthorizePath(client, { extra });
    expect(callbackParams(await browser.get(path))).toMatchObject({ error: 'invalid_request', state, iss: server.url });
  });

  it('answers request_not_supported for a request object', async () => {
    const { browser } = await signedInBrowser(server);
    const { path } = rpAuthorizePath(client, { extra: { request: 'eyJhbGciOiJub25lIn0.e30.' } });
    expect(callbackParams(await browser.get(path))).toMatchObject({ error: 'request_not_supported' });
  });

  it('prompt=login: a signed-in user signs in again, once, and the code carries the new sign-in', async () => {
    const { browser, user } = await userWithGrant();
    const before = await browserSession(server, browser);
    const { path, pkce, state } = rpAuthorizePath(client, { extra: { prompt: 'login', nonce: 'fresh' } });
    const returnTo = loginRedirect(await browser.get(path));
    expect(returnTo).toMatch(/^\/oauth\/authorize\?resume=[0-9a-f-]{36}$/);
    // Coming back with the old sign-in is not enough: the login page again, for the same request.
    expect(loginRedirect(await browser.get(returnTo))).toBe(returnTo);

    const signIn = await browser.signIn(user.email, user.password, returnTo);
    expect(signIn.headers.get('location')).toBe(returnTo);
    const params = callbackParams(await browser.get(returnTo));
    expect(params).toMatchObject({ code: expect.any(String), state });
    const after = await browserSession(server, browser);
    expect(after.id).not.toBe(before.id);
    expect((await sessionRevoked(server, before.id)).revoked).toBe(true);

    const answer = await exchangeCode(server, client, new URL(`${CALLBACK}?code=${params.code}`), pkce.verifier);
    const { claims } = await verifiedIdToken(server, answer.body.id_token as string);
    expect(claims).toMatchObject({ sid: after.id, auth_time: after.authTime, nonce: 'fresh' });
    expect(claims.auth_time as number).toBeGreaterThanOrEqual(before.authTime);
  });

  it('max_age exceeded: the user signs in again; max_age=0 asks every time and never loops', async () => {
    const { browser, user } = await userWithGrant();
    await ageSession(server, (await browserSession(server, browser)).id, 120);
    for (const maxAge of ['60', '0']) {
      const { path } = rpAuthorizePath(client, { extra: { max_age: maxAge } });
      const returnTo = loginRedirect(await browser.get(path));
      await browser.signIn(user.email, user.password, returnTo);
      expect(callbackParams(await browser.get(returnTo))).toMatchObject({ code: expect.any(String) });
    }
    // A sign-in within max_age is enough, with no login page.
    const { path } = rpAuthorizePath(client, { extra: { max_age: '3600' } });
    expect(callbackParams(await browser.get(path))).toMatchObject({ code: expect.any(String) });
  });

  it('prompt=consent shows the consent page even when the grant covers the request', async () => {
    const { browser } = await userWithGrant();
    const { path } = rpAuthorizePath(client, { extra: { prompt: 'consent' } });
    const response = await browser.get(path);
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('Allow');
    expect((await authorizeThrough(browser, path)).searchParams.get('code')).toEqual(expect.any(String));
  });

  it('applies to clients that do not use OpenID Connect too', async () => {
    const plain = await server.createClient({ redirectUris: [CALLBACK], scopes: ['properties:read'] });
    const { path } = rpAuthorizePath(plain, { scope: 'properties:read', extra: { prompt: 'none' } });
    expect(callbackParams(await new TestBrowser(server.url).get(path))).toMatchObject({ error: 'login_required' });
    const { browser } = await signedInBrowser(server);
    const { path: login } = rpAuthorizePath(plain, { scope: 'properties:read', extra: { prompt: 'login' } });
    loginRedirect(await browser.get(login));
  });
});
