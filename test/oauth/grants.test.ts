import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { authorizePath, TestBrowser, signedInBrowser } from '../helpers/oauth-browser';
import { exchangeCode, refresh, type TestClient, type Tokens } from './token-helpers';

interface GrantView {
  id: string;
  clientId: string;
  clientName: string;
  scopes: string[];
  createdAt: string;
  lastUsedAt: string | null;
}

/** The user's grant management: list own grants, revoke one with every token issued under it. */
describe('user grants', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer();
  });

  afterAll(async () => {
    await server?.close();
  });

  /** Consents in the browser and redeems the code at the token endpoint, so the grant has real refresh and access tokens. */
  async function authorizeAndRedeem(browser: TestBrowser, client: TestClient, scope: string): Promise<Tokens> {
    const request = authorizePath({ clientId: client.client.id, scope });
    let response = await browser.get(request.path);
    if (response.status === 200) response = await browser.submit(await response.text(), {}, 'approve');
    expect(response.status).toBe(303);
    const code = new URL(response.headers.get('location')!).searchParams.get('code')!;
    const redeemed = await exchangeCode(server, client, { code, verifier: request.pkce.verifier, grantId: '', redirectUri: 'https://client.example/callback' });
    expect(redeemed.status, redeemed.text).toBe(200);
    return redeemed.body as unknown as Tokens;
  }

  async function listGrants(browser: TestBrowser): Promise<GrantView[]> {
    const response = await browser.get('/oauth/grants');
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    return ((await response.json()) as { grants: GrantView[] }).grants;
  }

  const tokenStates = (grantId: string) =>
    server.db.one(sql.type(z.object({ liveRefresh: z.number(), liveAccess: z.number(), allRefresh: z.number(), allAccess: z.number() }))`
      SELECT (SELECT count(*)::int FROM oauth_refresh_tokens WHERE grant_id = ${grantId} AND revoked_at IS NULL) AS "liveRefresh",
             (SELECT count(*)::int FROM oauth_access_tokens WHERE grant_id = ${grantId} AND revoked_at IS NULL) AS "liveAccess",
             (SELECT count(*)::int FROM oauth_refresh_tokens WHERE grant_id = ${grantId}) AS "allRefresh",
             (SELECT count(*)::int FROM oauth_access_tokens WHERE grant_id = ${grantId}) AS "allAccess"`);

  it('needs a session', async () => {
    const response = await fetch(`${server.url}/oauth/grants`);
    expect(response.status).toBe(401);
    expect((await fetch(`${server.url}/oauth/grants/00000000-0000-4000-8000-000000000000`, { method: 'DELETE' })).status).toBe(401);
  });

  it("lists only the signed-in user's own active grants", async () => {
    const calendar = await server.createClient({ name: 'Calendar app' });
    const reports = await server.createClient({ name: 'Reports app' });
    const alice = await signedInBrowser(server);
    const bob = await signedInBrowser(server);
    await authorizeAndRedeem(alice.browser, calendar, 'properties:read offline_access');
    await authorizeAndRedeem(alice.browser, reports, 'reservations:read');
    await authorizeAndRedeem(bob.browser, calendar, 'properties:read');

    const aliceGrants = await listGrants(alice.browser);
    expect(aliceGrants.map((grant) => grant.clientName).sort()).toEqual(['Calendar app', 'Reports app']);
    const calendarGrant = aliceGrants.find((grant) => grant.clientId === calendar.client.id)!;
    expect(calendarGrant.scopes.sort()).toEqual(['offline_access', 'properties:read']);
    expect(Date.parse(calendarGrant.createdAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(Date.parse(calendarGrant.lastUsedAt!)).toBeGreaterThanOrEqual(Date.parse(calendarGrant.createdAt));
    expect(calendarGrant).not.toHaveProperty('firstUsedAt');

    const bobGrants = await listGrants(bob.browser);
    expect(bobGrants).toHaveLength(1);
    expect(bobGrants[0]!.clientId).toBe(calendar.client.id);
    expect(bobGrants[0]!.id).not.toBe(calendarGrant.id);

    // A Bearer session token (API consumers) works as well as the cookie.
    const login = await fetch(`${server.url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: bob.user.email, password: bob.user.password }),
    });
    const { sessionToken } = (await login.json()) as { sessionToken: string };
    const bearer = await fetch(`${server.url}/oauth/grants`, { headers: { authorization: `Bearer ${sessionToken}` } });
    expect(((await bearer.json()) as { grants: GrantView[] }).grants.map((grant) => grant.id)).toEqual([bobGrants[0]!.id]);
  });

  it('DELETE revokes the grant and every token issued under it, audited, then asks for consent again', async () => {
    const testClient = await server.createClient();
    const { client } = testClient;
    const { user, browser } = await signedInBrowser(server);
    const tokens = await authorizeAndRedeem(browser, testClient, 'properties:read offline_access');
    expect(tokens.refresh_token).toBeTruthy();
    const [grant] = await listGrants(browser);
    expect(await tokenStates(grant!.id)).toEqual({ liveRefresh: 1, liveAccess: 1, allRefresh: 1, allAccess: 1 });

    const response = await fetch(`${server.url}/oauth/grants/${grant!.id}`, {
      method: 'DELETE',
      headers: { cookie: `pm_session=${browser.cookies.get('pm_session')}` },
    });
    expect(response.status).toBe(204);
    expect(await tokenStates(grant!.id)).toEqual({ liveRefresh: 0, liveAccess: 0, allRefresh: 1, allAccess: 1 });
    expect(await listGrants(browser)).toEqual([]);

    const refused = await refresh(server, testClient, tokens.refresh_token);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_grant');

    const audit = await server.db.any(sql.type(z.object({ clientId: z.string().nullable(), ip: z.string().nullable(), details: z.record(z.unknown()) }))`
      SELECT client_id AS "clientId", host(ip_address) AS ip, details FROM audit_log WHERE action = 'OAuthGrantRevoke' AND user_id = ${user.id}`);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ clientId: client.id, ip: '127.0.0.1', details: { grantId: grant!.id } });

    // A second DELETE finds nothing; the next authorization asks for consent again.
    expect((await fetch(`${server.url}/oauth/grants/${grant!.id}`, { method: 'DELETE', headers: { cookie: `pm_session=${browser.cookies.get('pm_session')}` } })).status).toBe(404);
    expect((await browser.get(authorizePath({ clientId: client.id, scope: 'properties:read' }).path)).status).toBe(200);
  });

  it("answers 404 for someone else's grant and leaves it alone", async () => {
    const client = await server.createClient();
    const owner = await signedInBrowser(server);
    const other = await signedInBrowser(server);
    await authorizeAndRedeem(owner.browser, client, 'properties:read offline_access');
    const [grant] = await listGrants(owner.browser);
    const cookie = { cookie: `pm_session=${other.browser.cookies.get('pm_session')}` };
    for (const id of [grant!.id, '00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      const response = await fetch(`${server.url}/oauth/grants/${id}`, { method: 'DELETE', headers: cookie });
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: 'not_found' });
    }
    expect(await listGrants(owner.browser)).toHaveLength(1);
    expect(await tokenStates(grant!.id)).toMatchObject({ liveRefresh: 1, liveAccess: 1 });
  });

  it('lastUsedAt is null until tokens are issued, moves on token issuance and refresh, and not on consent', async () => {
    const client = await server.createClient();
    const { browser } = await signedInBrowser(server);
    const request = authorizePath({ clientId: client.client.id, scope: 'properties:read offline_access' });
    const approved = await browser.submit(await (await browser.get(request.path)).text(), {}, 'approve');
    const code = new URL(approved.headers.get('location')!).searchParams.get('code')!;
    const [consented] = await listGrants(browser);
    expect(consented!.lastUsedAt).toBeNull();

    const setLastUse = (at: string) => server.db.query(sql.unsafe`UPDATE oauth_grants SET last_used_at = ${at}::timestamptz WHERE id = ${consented!.id}`);
    const redeemed = await exchangeCode(server, client, { code, verifier: request.pkce.verifier, grantId: consented!.id, redirectUri: 'https://client.example/callback' });
    expect(redeemed.status, redeemed.text).toBe(200);
    const [used] = await listGrants(browser);
    expect(Date.parse(used!.lastUsedAt!)).toBeGreaterThan(Date.now() - 60_000);

    // Consenting again (a wider scope) is not a use of the grant.
    await setLastUse('2020-01-01T00:00:00Z');
    const wider = await browser.get(authorizePath({ clientId: client.client.id, scope: 'properties:read reservations:read' }).path);
    expect((await browser.submit(await wider.text(), {}, 'approve')).status).toBe(303);
    expect((await listGrants(browser))[0]!.lastUsedAt).toBe('2020-01-01T00:00:00.000Z');

    // A refresh is.
    expect((await refresh(server, client, (redeemed.body as unknown as Tokens).refresh_token)).status).toBe(200);
    expect(Date.parse((await listGrants(browser))[0]!.lastUsedAt!)).toBeGreaterThan(Date.now() - 60_000);
  });
});
