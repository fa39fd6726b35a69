import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { hashBearerValue } from '../../platform/secrets';
import { PortalRelyingParty } from '../../platform/sso/portal-relying-party';
import { TestBrowser } from '../helpers/oauth-browser';
import { freePort } from '../helpers/ports';
import { startRealityTestServers, type RealityTestServers } from '../helpers/reality';

/** "Sign in with the PM app": the portal as the api-server's OpenID Connect client, with openid-client. */
describe('OpenID Connect sign-in at the portal', () => {
  let servers: RealityTestServers;

  beforeAll(async () => {
    servers = await startRealityTestServers();
  });

  afterAll(async () => {
    await servers?.close();
  });

  /** GET /sso/login in the portal browser: where it sends the browser, and the flow's state. */
  async function startFlow(portal: TestBrowser) {
    const response = await portal.get('/sso/login');
    expect(response.status).toBe(303);
    const authorizationUrl = new URL(response.headers.get('location')!);
    return { response, authorizationUrl, state: authorizationUrl.searchParams.get('state')! };
  }

  /** The api-server's answer to the authorization request, followed to the portal's callback (no consent page: a first-party client). */
  async function authorize(pmBrowser: TestBrowser, authorizationUrl: URL): Promise<URL> {
    const response = await pmBrowser.get(authorizationUrl.href);
    expect([302, 303]).toContain(response.status);
    return new URL(response.headers.get('location')!);
  }

  const portalSessionOf = (portal: TestBrowser) =>
    servers.db.one(sql.type(z.object({ method: z.string(), pmSessionId: z.string().nullable(), pmUserId: z.string().nullable() }))`
      SELECT ps.method, ps.pm_session_id AS "pmSessionId", pu.pm_user_id AS "pmUserId"
      FROM portal_sessions ps JOIN portal_users pu ON pu.id = ps.portal_user_id
      WHERE ps.token_hash = ${hashBearerValue(portal.cookies.get('portal_session')!)}`);

  it('signs a signed-in PM user straight in: authorization code with PKCE, state and nonce, then the portal page', async () => {
    const pm = await servers.signInPmUser({ roles: ['manager'] });
    const portal = servers.browser();
    const { response, authorizationUrl } = await startFlow(portal);
    expect(authorizationUrl.origin + authorizationUrl.pathname).toBe(`${servers.api.url}/oauth/authorize`);
    expect(Object.fromEntries(authorizationUrl.searchParams)).toMatchObject({
      response_type: 'code',
      client_id: servers.config.sso.portal.clientId,
      redirect_uri: `${servers.url}/sso/callback`,
      scope: 'openid profile email',
      code_challenge_method: 'S256',
    });
    expect(authorizationUrl.searchParams.get('nonce')).toBeTruthy();
    const flowCookie = response.headers.getSetCookie().find((cookie) => cookie.startsWith('portal_oidc_flow='))!;
    expect(flowCookie).toMatch(/Path=\/sso/);
    expect(flowCookie).toMatch(/HttpOnly/i);
    expect(flowCookie).toMatch(/SameSite=Lax/i);

    const callback = await authorize(pm.browser, authorizationUrl);
    expect(callback.origin + callback.pathname).toBe(`${servers.url}/sso/callback`);
    const landed = await portal.get(callback.pathname + callback.search);
    expect(landed.status).toBe(303);
    expect(landed.headers.get('location')).toBe('/');
    expect(portal.cookies.has('portal_oidc_flow')).toBe(false);

    const page = await (await portal.get('/')).text();
    expect(page).toContain(`(${pm.user.email})`);
    expect(page).toContain('<li>listing_editor</li>');
    expect(page).toContain('OpenID Connect');
    expect(await portalSessionOf(portal)).toEqual({ method: 'oidc', pmSessionId: pm.sessionId, pmUserId: pm.user.id });
    const login = (await servers.auditRows('SsoLogin')).find((row) => row.userId === pm.user.id)!;
    expect(login.details).toMatchObject({ method: 'oidc', sid: pm.sessionId });
    expect(typeof login.details.authTime).toBe('number');
  });

  it('sends a user without a PM session to the PM sign-in first, then on to the portal', async () => {
    const user = await servers.api.createUser(`oidc-${Date.now()}@example.com`);
    const pmBrowser = new TestBrowser(servers.api.url);
    const portal = servers.browser();
    const { authorizationUrl } = await startFlow(portal);
    const toLogin = await pmBrowser.get(authorizationUrl.href);
    expect([302, 303]).toContain(toLogin.status);
    const loginUrl = new URL(toLogin.headers.get('location')!, servers.api.url);
    expect(loginUrl.pathname).toBe('/login');
    const signedIn = await pmBrowser.signIn(user.email, user.password, loginUrl.searchParams.get('return_to')!);
    expect(signedIn.status).toBe(303);
    const callback = await authorize(pmBrowser, new URL(signedIn.headers.get('location')!, servers.api.url));
    expect((await portal.get(callback.pathname + callback.search)).status).toBe(303);
    expect((await portalSessionOf(portal)).pmUserId).toBe(user.id);
  });

  it('explains an error answer of the PM app, e.g. access_denied, and audits it', async () => {
    const portal = servers.browser();
    const { state } = await startFlow(portal);
    const response = await portal.get(`/sso/callback?${new URLSearchParams({ error: 'access_denied', state, iss: servers.api.config.authorizationServer.issuer })}`);
    expect(response.status).toBe(403);
    expect(await response.text()).toContain('The PM app did not allow the sign-in');
    expect(portal.cookies.has('portal_session')).toBe(false);
    expect((await servers.auditRows('SsoTokenRejected')).at(-1)!.details).toMatchObject({ method: 'oidc', reason: 'access_denied' });
  });

  it('audits only a known OAuth error code: anything else the callback URL says is "unknown"', async () => {
    const madeUp = 'made_up<script>-code-of-the-visitor';
    const withoutFlow = await servers.browser().get(`/sso/callback?${new URLSearchParams({ error: madeUp })}`);
    expect(withoutFlow.status).toBe(400);
    expect(await withoutFlow.text()).not.toContain('made_up');
    expect((await servers.auditRows('SsoTokenRejected')).at(-1)!.details).toMatchObject({ method: 'oidc', reason: 'unknown' });

    const portal = servers.browser();
    const { state } = await startFlow(portal);
    const withFlow = await portal.get(`/sso/callback?${new URLSearchParams({ error: madeUp, state, iss: servers.api.config.authorizationServer.issuer })}`);
    expect(withFlow.status).toBe(400);
    expect((await servers.auditRows('SsoTokenRejected')).at(-1)!.details).toMatchObject({ method: 'oidc', reason: 'unknown' });
    expect(JSON.stringify(await servers.auditRows('SsoTokenRejected'))).not.toContain('made_up');

    const known = await servers.browser().get(`/sso/callback?${new URLSearchParams({ error: 'login_required' })}`);
    expect(known.status).toBe(401);
    expect((await servers.auditRows('SsoTokenRejected')).at(-1)!.details).toMatchObject({ reason: 'login_required' });
  });

  it('refuses a callback from another browser or with another state', async () => {
    const pm = await servers.signInPmUser();
    const portal = servers.browser();
    const { authorizationUrl } = await startFlow(portal);
    const callback = await authorize(pm.browser, authorizationUrl);

    const elsewhere = await servers.browser().get(callback.pathname + callback.search);
    expect(elsewhere.status).toBe(400);
    expect(await elsewhere.text()).toContain('started in another browser');

    const tampered = new URLSearchParams(callback.search);
    tampered.set('state', 'another-state-value-entirely');
    const mismatch = await portal.get(`/sso/callback?${tampered}`);
    expect(mismatch.status).toBe(400);
    expect(portal.cookies.has('portal_session')).toBe(false);
    expect((await servers.auditRows('SsoTokenRejected')).at(-1)!.details).toMatchObject({ method: 'oidc' });
  });

  it('refuses the sign-in when the PM session ended before the portal redeemed the code', async () => {
    const pm = await servers.signInPmUser();
    const portal = servers.browser();
    const callback = await authorize(pm.browser, (await startFlow(portal)).authorizationUrl);
    await servers.api.db.query(sql.unsafe`UPDATE user_sessions SET revoked_at = now(), ended_reason = 'logout' WHERE id = ${pm.sessionId}`);
    const response = await portal.get(callback.pathname + callback.search);
    expect(response.status).toBe(401);
    expect(await response.text()).toContain('Your PM app session has ended');
    expect((await servers.auditRows('SsoTokenRejected')).at(-1)!.details).toMatchObject({ method: 'oidc', reason: 'pm_session_ended' });
  });

  it('answers 503 while the api-server cannot be reached', async () => {
    const deadIssuer = `http://127.0.0.1:${await freePort()}`;
    const unreachable = await servers.otherPortal({
      relyingParty: new PortalRelyingParty({ issuer: deadIssuer, clientId: servers.config.sso.portal.clientId, clientSecret: servers.clientSecret, allowInsecureRequests: true, timeoutMs: servers.config.sso.portal.apiServerTimeoutMs }),
    });
    try {
      const response = await unreachable.inject({ url: '/sso/login' });
      expect(response.statusCode).toBe(503);
      expect(response.headers['retry-after']).toBeDefined();
    } finally {
      await unreachable.close();
    }
  });
});
