import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { SCOPE_DESCRIPTIONS } from '../../platform/oauth-server/scopes';
import { hashBearerValue } from '../../platform/secrets';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { signedInBrowser } from '../helpers/oauth-browser';
import { auditRows, obtainTokens, postAsClient, refresh, type TestClient } from '../oauth/token-helpers';
import { authorizeThrough, browserSession, CALLBACK, createRelyingParty, exchangeCode, rpAuthorizePath, signInWithOpenId, verifiedIdToken } from './oidc-helpers';

/** The token endpoint's id_token: claims, signature, nonce, session, refresh, and who gets none. */
describe('id_token', () => {
  let server: OAuthTestServer;
  let client: TestClient;

  beforeAll(async () => {
    server = await startOAuthTestServer({ ID_TOKEN_TTL_SECONDS: '600' });
    client = await createRelyingParty(server);
  });
  afterAll(() => server?.close());

  it('comes with the code exchange: signed with our key, for the client, naming the user, the session and the nonce', async () => {
    const { browser, user } = await signedInBrowser(server);
    const tokens = await signInWithOpenId(server, client, browser, { scope: 'openid profile', extra: { nonce: 'n-0S6_WzA2Mj' } });
    const session = await browserSession(server, browser);
    const { header, claims } = await verifiedIdToken(server, tokens.id_token!);

    const jwks = (await (await fetch(`${server.url}/oauth/jwks`)).json()) as { keys: Array<{ kid: string }> };
    expect(header).toEqual({ alg: 'RS256', typ: 'JWT', kid: jwks.keys[0]!.kid });
    expect(claims).toEqual({
      iss: server.url,
      sub: user.id,
      aud: client.client.id,
      iat: expect.any(Number),
      exp: expect.any(Number),
      auth_time: session.authTime,
      nonce: 'n-0S6_WzA2Mj',
      sid: session.id,
      amr: ['pwd'],
      acr: 'urn:pm-app:acr:password',
    });
    expect(claims.exp! - claims.iat!).toBe(600);
    expect(Math.abs(claims.iat! - Date.now() / 1000)).toBeLessThan(30);
    // Profile claims come from userinfo (Core section 5.4), never inside the id_token.
    expect(claims).not.toHaveProperty('name');
    expect(claims).not.toHaveProperty('email');
    expect(tokens.scope).toBe('openid profile');
  });

  it('has no nonce when the request had none, and is audited on the exchange without the token', async () => {
    const { browser, user } = await signedInBrowser(server);
    const tokens = await signInWithOpenId(server, client, browser);
    const { claims } = await verifiedIdToken(server, tokens.id_token!);
    expect(claims).not.toHaveProperty('nonce');
    const session = await browserSession(server, browser);
    const exchange = (await auditRows(server, 'OAuthCodeExchange')).find((row) => row.user_id === user.id)!;
    expect(exchange.details).toEqual({ scopes: ['openid'], oidc: true, sid: session.id });
    expect(JSON.stringify(await auditRows(server, 'OAuthCodeExchange'))).not.toContain(tokens.id_token!);
  });

  it('is not issued without the openid scope', async () => {
    const { browser } = await signedInBrowser(server);
    const tokens = await signInWithOpenId(server, client, browser, { scope: 'properties:read' });
    expect(tokens).not.toHaveProperty('id_token');
  });

  it('comes again with every refresh: the same session and auth_time, no nonce, and rotation keeps them', async () => {
    const { browser } = await signedInBrowser(server);
    const tokens = await signInWithOpenId(server, client, browser, { scope: 'openid offline_access', extra: { nonce: 'first' } });
    const session = await browserSession(server, browser);
    const stored = await server.db.one(sql.type(z.object({ sessionId: z.string(), authTime: z.number() }))`
      SELECT session_id AS "sessionId", auth_time AS "authTime" FROM oauth_refresh_tokens WHERE token_hash = ${hashBearerValue(tokens.refresh_token!)}`);
    expect(stored.sessionId).toBe(session.id);
    expect(Math.floor(stored.authTime / 1000)).toBe(session.authTime);

    const first = await refresh(server, client, tokens.refresh_token!);
    expect(first.status).toBe(200);
    const second = await refresh(server, client, first.body.refresh_token as string);
    expect(second.status).toBe(200);
    for (const answer of [first, second]) {
      const { claims } = await verifiedIdToken(server, answer.body.id_token as string);
      expect(claims).toMatchObject({ sid: session.id, auth_time: session.authTime, aud: client.client.id });
      expect(claims).not.toHaveProperty('nonce');
    }
    const refreshes = await auditRows(server, 'OAuthTokenRefresh');
    expect(refreshes.at(-1)!.details).toEqual({ scopes: ['openid', 'offline_access'], oidc: true, sid: session.id });
  });

  it('is not issued on a refresh narrowed to scopes without openid', async () => {
    const { browser } = await signedInBrowser(server);
    const tokens = await signInWithOpenId(server, client, browser, { scope: 'openid properties:read offline_access' });
    const narrowed = await refresh(server, client, tokens.refresh_token!, { scope: 'properties:read' });
    expect(narrowed.status).toBe(200);
    expect(narrowed.body).not.toHaveProperty('id_token');
  });

  it('is never issued to a voice client or for client_credentials', async () => {
    const { user } = await signedInBrowser(server);
    const voice = await server.createClient({ kind: 'voice', scopes: ['openid', 'properties:read'] });
    expect(await obtainTokens(server, voice, user.id, ['openid', 'properties:read'])).not.toHaveProperty('id_token');

    const service = await server.createClient({ kind: 'service', grantTypes: ['client_credentials'], redirectUris: [], scopes: ['openid'] });
    const answer = await postAsClient(server, '/oauth/token', service, { grant_type: 'client_credentials', scope: 'openid' });
    expect(answer.status).toBe(200);
    expect(answer.body).not.toHaveProperty('id_token');
  });

  it('refuses a nonce longer than 512 characters at the authorization endpoint, at the redirect URI', async () => {
    const { browser } = await signedInBrowser(server);
    const { path, state } = rpAuthorizePath(client, { extra: { nonce: 'n'.repeat(513) } });
    const response = await browser.get(path);
    expect(response.status).toBe(303);
    const location = new URL(response.headers.get('location')!);
    expect(`${location.origin}${location.pathname}`).toBe(CALLBACK);
    expect(Object.fromEntries(location.searchParams)).toMatchObject({ error: 'invalid_request', state, iss: server.url });
  });

  it('carries the nonce through the consent page', async () => {
    const { browser } = await signedInBrowser(server);
    const fresh = await createRelyingParty(server);
    const { path, pkce } = rpAuthorizePath(fresh, { extra: { nonce: 'through-consent' } });
    const first = await browser.get(path);
    expect(first.status).toBe(200);
    expect(await first.text()).toContain(SCOPE_DESCRIPTIONS.openid);
    const callback = await authorizeThrough(browser, path);
    const answer = await exchangeCode(server, fresh, callback, pkce.verifier);
    const { claims } = await verifiedIdToken(server, answer.body.id_token as string);
    expect(claims.nonce).toBe('through-consent');
  });
});
