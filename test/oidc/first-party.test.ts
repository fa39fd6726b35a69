import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthTestServer, ADMIN_TOKEN, INITIAL_ACCESS_TOKEN, type OAuthTestServer } from '../helpers/oauth-server';
import { signedInBrowser, TestBrowser } from '../helpers/oauth-browser';
import { auditRows, type TestClient } from '../oauth/token-helpers';
import { CALLBACK, createRelyingParty, exchangeCode, rpAuthorizePath, verifiedIdToken } from './oidc-helpers';

/** First-party clients (set by operators only): a signed-in user passes straight through, with no consent page. */
describe('first-party clients', () => {
  let server: OAuthTestServer;
  let firstParty: TestClient;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    firstParty = await createRelyingParty(server, { name: 'Portal', firstParty: true });
  });
  afterAll(() => server?.close());

  it('a signed-in user gets a code without a consent page; the grant is recorded and audited as first_party', async () => {
    const { browser, user } = await signedInBrowser(server);
    const { path, pkce, state } = rpAuthorizePath(firstParty, { scope: 'openid profile email', extra: { nonce: 'fp' } });
    const response = await browser.get(path);
    expect(response.status).toBe(303);
    const callback = new URL(response.headers.get('location')!);
    expect(callback.searchParams.get('state')).toBe(state);
    const answer = await exchangeCode(server, firstParty, callback, pkce.verifier);
    expect(answer.status).toBe(200);
    expect((await verifiedIdToken(server, answer.body.id_token as string)).claims).toMatchObject({ sub: user.id, nonce: 'fp' });

    const authorize = (await auditRows(server, 'OAuthAuthorize')).filter((row) => row.user_id === user.id);
    expect(authorize).toEqual([expect.objectContaining({ outcome: 'success', client_id: firstParty.client.id, details: { scopes: ['openid', 'profile', 'email'], consent: 'first_party' } })]);
    const grants = (await (await browser.get('/oauth/grants')).json()) as { grants: Array<{ clientId: string; scopes: string[] }> };
    expect(grants.grants).toEqual([expect.objectContaining({ clientId: firstParty.client.id, scopes: ['openid', 'profile', 'email'] })]);
  });

  it('a user who is not signed in signs in, then passes straight through', async () => {
    const user = await server.createUser('first-party-login@example.com');
    const browser = new TestBrowser(server.url);
    const { path } = rpAuthorizePath(firstParty);
    const toLogin = await browser.get(path);
    const returnTo = new URL(toLogin.headers.get('location')!, server.url).searchParams.get('return_to')!;
    await browser.signIn(user.email, user.password, returnTo);
    const response = await browser.get(returnTo);
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toMatch(new RegExp(`^${CALLBACK}\\?code=`));
  });

  it('still shows the consent page when the client asks for it (prompt=consent)', async () => {
    const { browser } = await signedInBrowser(server);
    const response = await browser.get(rpAuthorizePath(firstParty, { extra: { prompt: 'consent' } }).path);
    expect(response.status).toBe(200);
  });

  it('a client that is not first-party still shows the consent page', async () => {
    const { browser } = await signedInBrowser(server);
    const thirdParty = await createRelyingParty(server);
    expect((await browser.get(rpAuthorizePath(thirdParty).path)).status).toBe(200);
  });

  describe('only operators make a client first-party', () => {
    const admin = (method: string, path: string, body: unknown) =>
      fetch(`${server.url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

    it('dynamic registration ignores first_party', async () => {
      const response = await fetch(`${server.url}/oauth/register`, {
        method: 'POST',
        headers: { authorization: `Bearer ${INITIAL_ACCESS_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ redirect_uris: [CALLBACK], scope: 'openid', first_party: true }),
      });
      expect(response.status).toBe(201);
      expect(await response.json()).toMatchObject({ first_party: false });
    });

    it('the admin API creates and changes first-party clients, confidential ones only', async () => {
      const base = { name: 'Operator app', redirect_uris: [CALLBACK], grant_types: ['authorization_code'], scopes: ['openid'] };
      const created = await admin('POST', '/api/v1/admin/oauth/clients', { ...base, token_endpoint_auth_method: 'client_secret_basic', first_party: true });
      expect(created.status).toBe(201);
      expect(await created.json()).toMatchObject({ first_party: true });

      const publicClient = await admin('POST', '/api/v1/admin/oauth/clients', { ...base, token_endpoint_auth_method: 'none', first_party: true });
      expect(publicClient.status).toBe(400);
      expect(await publicClient.json()).toMatchObject({ error: 'invalid_client_metadata' });

      const later = (await (await admin('POST', '/api/v1/admin/oauth/clients', { ...base, token_endpoint_auth_method: 'client_secret_basic' })).json()) as { client_id: string; first_party: boolean };
      expect(later.first_party).toBe(false);
      const changed = await admin('PATCH', `/api/v1/admin/oauth/clients/${later.client_id}`, { first_party: true });
      expect(changed.status).toBe(200);
      expect(await changed.json()).toMatchObject({ first_party: true });
      expect((await auditRows(server, 'OAuthClientUpdate')).at(-1)).toMatchObject({ client_id: later.client_id, details: { fields: ['first_party'], first_party: true } });
    });
  });
});
