import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBearerValue } from '../../platform/secrets';
import { authorizePath, parseForm, TestBrowser } from '../helpers/oauth-browser';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { exchangeCode, introspect, issueCode, postAsClient, refresh, type TestClient } from './token-helpers';

/** Design invariant: nothing bearer-like is stored in plaintext. Reads every row of every table after a full flow. */
describe('nothing stored in plaintext', () => {
  let server: OAuthTestServer;
  let client: TestClient;
  let userId: string;
  let user: { id: string; email: string; password: string };

  beforeAll(async () => {
    server = await startOAuthTestServer();
    client = await server.createClient({ name: 'Storage test', tokenEndpointAuthMethod: 'client_secret_post' });
    user = await server.createUser('storage@example.com');
    userId = user.id;
  });
  afterAll(() => server?.close());

  it('no code, refresh token, access token, client secret, password, session or CSRF token appears in any column of any table', async () => {
    const secrets: string[] = [client.clientSecret!, user.password];
    const postClient = (parameters: Record<string, string>) =>
      postAsClient(server, '/oauth/token', { client: client.client, clientSecret: undefined }, { ...parameters, client_secret: client.clientSecret! });

    // Sign in and consent over HTTP, as a browser would: the session cookie and the consent form's CSRF token are stored only hashed.
    const browser = new TestBrowser(server.url);
    const signedIn = await browser.signIn(user.email, user.password);
    expect(signedIn.status).toBe(303);
    expect(browser.cookies.size).toBeGreaterThan(0);
    secrets.push(...[...browser.cookies.values()].filter((value) => value.length >= 16));
    const authorization = authorizePath({ clientId: client.client.id, scope: 'properties:read offline_access' });
    const consent = await browser.get(authorization.path);
    expect(consent.status).toBe(200);
    const consentPage = await consent.text();
    const { fields } = parseForm(consentPage);
    expect(fields.csrf_token).toEqual(expect.any(String));
    secrets.push(fields.csrf_token!);
    const approved = await browser.submit(consentPage, {}, 'approve');
    expect(approved.status).toBe(303);
    const browserCode = new URL(approved.headers.get('location')!).searchParams.get('code')!;
    secrets.push(browserCode, authorization.pkce.verifier);
    const browserTokens = await postClient({
      grant_type: 'authorization_code',
      code: browserCode,
      redirect_uri: client.client.redirectUris[0]!,
      code_verifier: authorization.pkce.verifier,
    });
    expect(browserTokens.status).toBe(200);
    secrets.push(browserTokens.body.access_token as string, browserTokens.body.refresh_token as string);
    // The session cookie is seen by the scan below only as its hash; make sure it was collected.
    expect(secrets.length).toBeGreaterThanOrEqual(8);

    const issued = await issueCode(server, client, userId);
    secrets.push(issued.code, issued.verifier);
    const first = await postClient({ grant_type: 'authorization_code', code: issued.code, redirect_uri: issued.redirectUri, code_verifier: issued.verifier });
    expect(first.status).toBe(200);
    secrets.push(first.body.access_token as string, first.body.refresh_token as string);
    const second = await postClient({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token as string });
    expect(second.status).toBe(200);
    secrets.push(second.body.access_token as string, second.body.refresh_token as string);

    // Failures and attacks write audit rows too: a replayed code, a reused refresh token, a wrong secret.
    const replayedCode = await issueCode(server, { client: client.client, clientSecret: undefined }, userId);
    secrets.push(replayedCode.code, replayedCode.verifier);
    const replayParameters = { grant_type: 'authorization_code', code: replayedCode.code, redirect_uri: replayedCode.redirectUri, code_verifier: replayedCode.verifier };
    const replayedTokens = await postClient(replayParameters);
    secrets.push(replayedTokens.body.access_token as string, replayedTokens.body.refresh_token as string);
    expect((await postClient(replayParameters)).status).toBe(400);
    expect((await postClient({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token as string })).status).toBe(400);
    const wrongSecret = 'wrong-secret-that-must-not-be-stored-0123456789';
    secrets.push(wrongSecret);
    expect((await postAsClient(server, '/oauth/token', { client: client.client, clientSecret: undefined }, { grant_type: 'refresh_token', refresh_token: 'x', client_secret: wrongSecret })).status).toBe(401);

    // Introspection and revocation of live tokens (an introspecting confidential client, basic auth).
    const basicClient = await server.createClient({ name: 'Basic' });
    secrets.push(basicClient.clientSecret!);
    const basicIssued = await issueCode(server, basicClient, userId);
    secrets.push(basicIssued.code, basicIssued.verifier);
    const basicTokens = await exchangeCode(server, basicClient, basicIssued);
    secrets.push(basicTokens.body.access_token as string, basicTokens.body.refresh_token as string);
    await introspect(server, basicClient, basicTokens.body.access_token as string);
    const basicRefreshed = await refresh(server, basicClient, basicTokens.body.refresh_token as string);
    secrets.push(basicRefreshed.body.access_token as string, basicRefreshed.body.refresh_token as string);
    await postAsClient(server, '/oauth/revoke', basicClient, { token: basicRefreshed.body.refresh_token as string });
    await postAsClient(server, '/oauth/revoke', basicClient, { token: basicTokens.body.access_token as string });

    const service = await server.createClient({ name: 'Service', kind: 'service', grantTypes: ['client_credentials'], redirectUris: [] });
    secrets.push(service.clientSecret!);
    const serviceTokens = await postAsClient(server, '/oauth/token', service, { grant_type: 'client_credentials' });
    secrets.push(serviceTokens.body.access_token as string);

    for (const secret of secrets) expect(secret, 'every value collected').toEqual(expect.any(String));
    // A JWT's signature part is unique to it; it must not be stored either.
    const needles = [...secrets, ...secrets.filter((secret) => secret.split('.').length === 3).map((jwt) => jwt.split('.')[2]!)];

    const tables = await server.db.anyFirst(sql.type(z.object({ name: z.string() }))`
      SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name
      FROM information_schema.tables
      WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'`);
    expect(tables.length).toBeGreaterThan(5);
    expect(tables).toEqual(expect.arrayContaining(['public.oauth_refresh_tokens', 'public.oauth_authorization_codes', 'public.oauth_clients', 'public.audit_log']));

    // The scan must be able to see what is stored: the refresh token's hash is there, the token itself is not.
    const storedHash = hashBearerValue(first.body.refresh_token as string);
    let hashSeen = false;
    let rowCount = 0;
    for (const table of tables) {
      const rows = await server.db.anyFirst(sql.type(z.object({ row: z.string() }))`
        SELECT row_to_json(t)::text AS row FROM ${sql.identifier(table.split('.').map((part) => part.replace(/^"|"$/g, '')))} t`);
      rowCount += rows.length;
      for (const row of rows) {
        if (row.includes(storedHash)) hashSeen = true;
        for (const needle of needles) {
          if (row.includes(needle)) throw new Error(`${table} stores a secret in plaintext: ${row.slice(0, 300)}`);
        }
      }
    }
    expect(rowCount).toBeGreaterThan(20);
    expect(hashSeen).toBe(true);
  });
});
