import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { signedInBrowser } from '../helpers/oauth-browser';
import { postAsClient, type TestClient } from '../oauth/token-helpers';
import { createRelyingParty, signInWithOpenId } from './oidc-helpers';

/** GET|POST /oauth/userinfo: claims by scope, and RFC 6750 answers for every token that may not read them. */
describe('userinfo', () => {
  let server: OAuthTestServer;
  let client: TestClient;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    client = await createRelyingParty(server);
  });
  afterAll(() => server?.close());

  const userinfo = (token: string | undefined, method: 'GET' | 'POST' = 'GET') =>
    fetch(`${server.url}/oauth/userinfo`, { method, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });

  async function tokensFor(scope: string) {
    const { browser, user } = await signedInBrowser(server);
    return { user, tokens: await signInWithOpenId(server, client, browser, { scope }) };
  }

  it.each([
    ['openid', (user: { id: string }) => ({ sub: user.id })],
    ['openid profile', (user: { id: string; email: string }) => ({ sub: user.id, name: user.email.split('@')[0] })],
    ['openid email', (user: { id: string; email: string }) => ({ sub: user.id, email: user.email, email_verified: false })],
    ['openid profile email', (user: { id: string; email: string }) => ({ sub: user.id, name: user.email.split('@')[0], email: user.email, email_verified: false })],
  ])('answers the claims of scope "%s" to GET and POST', async (scope, expected) => {
    const { user, tokens } = await tokensFor(scope);
    for (const method of ['GET', 'POST'] as const) {
      const response = await userinfo(tokens.access_token, method);
      expect(response.status).toBe(200);
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(await response.json()).toEqual(expected(user));
    }
  });

  it('asks for a token when none is presented, without an error code in the challenge', async () => {
    const response = await userinfo(undefined);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer realm="oauth"');
  });

  it.each([
    ['a malformed token', 'not-a-jwt'],
    ['a forged JWT', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'],
  ])('answers invalid_token for %s', async (_label, token) => {
    const response = await userinfo(token);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer realm="oauth", error="invalid_token"/);
    expect(await response.json()).toMatchObject({ error: 'invalid_token' });
  });

  it('answers invalid_token once the access token is revoked', async () => {
    const { tokens } = await tokensFor('openid');
    expect((await userinfo(tokens.access_token)).status).toBe(200);
    expect((await postAsClient(server, '/oauth/revoke', client, { token: tokens.access_token })).status).toBe(200);
    const response = await userinfo(tokens.access_token);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toContain('error="invalid_token"');
  });

  it('answers invalid_token for a refresh token presented as the bearer', async () => {
    const { tokens } = await tokensFor('openid offline_access');
    expect((await userinfo(tokens.refresh_token!)).status).toBe(401);
  });

  it('answers insufficient_scope (403) for an access token without openid', async () => {
    const { tokens } = await tokensFor('properties:read');
    const response = await userinfo(tokens.access_token);
    expect(response.status).toBe(403);
    expect(response.headers.get('www-authenticate')).toBe('Bearer realm="oauth", error="insufficient_scope", error_description="userinfo needs the openid scope", scope="openid"');
    expect(await response.json()).toMatchObject({ error: 'insufficient_scope' });
  });

  it('answers invalid_token while the user is disabled', async () => {
    const { user, tokens } = await tokensFor('openid');
    await server.db.query(sql.unsafe`UPDATE users SET disabled_at = now() WHERE id = ${user.id}`);
    expect((await userinfo(tokens.access_token)).status).toBe(401);
  });

  it('answers invalid_token for a client_credentials token (it names no user)', async () => {
    const service = await server.createClient({ kind: 'service', grantTypes: ['client_credentials'], redirectUris: [], scopes: ['openid'] });
    const answer = await postAsClient(server, '/oauth/token', service, { grant_type: 'client_credentials', scope: 'openid' });
    expect((await userinfo(answer.body.access_token as string)).status).toBe(401);
  });
});
