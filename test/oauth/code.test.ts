import { decodeJwt, decodeProtectedHeader } from 'jose';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBearerValue } from '../../platform/secrets';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows, exchangeCode, introspect, issueCode, postAsClient, postForm, type TestClient } from './token-helpers';

describe('authorization code grant', () => {
  let server: OAuthTestServer;
  let clientA: TestClient;
  let clientB: TestClient;
  let publicClient: TestClient;
  let userId: string;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    clientA = await server.createClient({ name: 'Client A' });
    clientB = await server.createClient({ name: 'Client B' });
    publicClient = await server.createClient({ name: 'Native app', tokenEndpointAuthMethod: 'none', redirectUris: ['http://127.0.0.1/callback'] });
    userId = (await server.createUser('code@example.com')).id;
  });
  afterAll(() => server?.close());

  /** The OAuthCodeRejected row of this code's refusal: who presented it, why, from where, and never the code. */
  const expectCodeRejected = async (presentedBy: TestClient, reason: string, code: string) => {
    const rows = await auditRows(server, 'OAuthCodeRejected');
    expect(rows).toContainEqual(
      expect.objectContaining({
        outcome: 'failure',
        actor_type: 'client',
        client_id: presentedBy.client.id,
        user_id: userId,
        ip_address: '127.0.0.1',
        details: expect.objectContaining({ reason }),
      }),
    );
    expect(JSON.stringify(rows)).not.toContain(code);
  };

  it('exchanges a code for an RFC 9068 access token and an opaque refresh token', async () => {
    const issued = await issueCode(server, clientA, userId, ['properties:read', 'offline_access']);
    const before = Math.floor(Date.now() / 1000);
    const response = await exchangeCode(server, clientA, issued);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('pragma')).toBe('no-cache');
    expect(response.body).toEqual({
      access_token: expect.any(String),
      token_type: 'Bearer',
      expires_in: server.config.lifetimes.accessTokenSeconds,
      refresh_token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      scope: 'properties:read offline_access',
    });
    const accessToken = response.body.access_token as string;
    expect(decodeProtectedHeader(accessToken)).toMatchObject({ alg: 'RS256', typ: 'at+jwt', kid: expect.any(String) });
    const claims = decodeJwt(accessToken);
    expect(claims).toEqual({
      iss: server.url,
      aud: server.url,
      sub: userId,
      client_id: clientA.client.id,
      scope: 'properties:read offline_access',
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
      iat: expect.any(Number),
      exp: expect.any(Number),
    });
    expect(claims.iat).toBeGreaterThanOrEqual(before - 1);
    expect(claims.exp! - claims.iat!).toBe(server.config.lifetimes.accessTokenSeconds);
    expect(await auditRows(server, 'OAuthCodeExchange')).toContainEqual(
      expect.objectContaining({ outcome: 'success', client_id: clientA.client.id, user_id: userId }),
    );
  });

  it('lets a public client redeem with PKCE alone (client_id in the body)', async () => {
    const issued = await issueCode(server, publicClient, userId);
    const response = await exchangeCode(server, publicClient, issued);
    expect(response.status).toBe(200);
    expect(response.body.refresh_token).toEqual(expect.any(String));
  });

  it('accepts client_secret_post for a client registered with it', async () => {
    const postClient = await server.createClient({ name: 'Google', tokenEndpointAuthMethod: 'client_secret_post' });
    const issued = await issueCode(server, postClient, userId);
    const response = await postForm(server, '/oauth/token', {
      grant_type: 'authorization_code',
      code: issued.code,
      redirect_uri: issued.redirectUri,
      code_verifier: issued.verifier,
      client_id: postClient.client.id,
      client_secret: postClient.clientSecret!,
    });
    expect(response.status).toBe(200);
  });

  it('a code is single use; a replay revokes every token it issued and is audited', async () => {
    const issued = await issueCode(server, clientA, userId);
    const first = await exchangeCode(server, clientA, issued);
    expect(first.status).toBe(200);
    const { access_token: accessToken, refresh_token: refreshToken } = first.body as { access_token: string; refresh_token: string };
    expect(await introspect(server, clientA, accessToken)).toMatchObject({ active: true });

    const replay = await exchangeCode(server, clientA, issued);
    expect(replay.status).toBe(400);
    expect(replay.body).toEqual({ error: 'invalid_grant', error_description: expect.any(String) });

    expect(await introspect(server, clientA, accessToken)).toEqual({ active: false });
    expect(await introspect(server, clientA, refreshToken)).toEqual({ active: false });
    const refreshed = await postAsClient(server, '/oauth/token', clientA, { grant_type: 'refresh_token', refresh_token: refreshToken });
    expect(refreshed.status).toBe(400);
    expect(refreshed.body.error).toBe('invalid_grant');
    const replays = await auditRows(server, 'OAuthCodeReplay');
    expect(replays).toContainEqual(expect.objectContaining({ outcome: 'failure', client_id: clientA.client.id, user_id: userId, ip_address: '127.0.0.1' }));
    expect(JSON.stringify(replays)).not.toContain(issued.code);
  });

  it('concurrent redemptions of one code: exactly one succeeds, and the replay revokes what it issued', async () => {
    for (let round = 0; round < 5; round += 1) {
      const issued = await issueCode(server, clientA, userId);
      const responses = await Promise.all([0, 1, 2].map(() => exchangeCode(server, clientA, issued)));
      const winners = responses.filter((response) => response.status === 200);
      // The code is valid, so one redemption must win; the row lock makes the others replays.
      expect(winners).toHaveLength(1);
      expect(responses.filter((response) => response.status === 400 && response.body.error === 'invalid_grant')).toHaveLength(2);
      const [winner] = winners;
      expect(await introspect(server, clientA, winner!.body.access_token as string)).toEqual({ active: false });
      expect(await introspect(server, clientA, winner!.body.refresh_token as string)).toEqual({ active: false });
    }
  });

  it('refuses an expired code', async () => {
    const issued = await issueCode(server, clientA, userId);
    await server.db.query(sql.unsafe`
      UPDATE oauth_authorization_codes SET expires_at = now() - interval '1 second' WHERE code_hash = ${hashBearerValue(issued.code)}`);
    const response = await exchangeCode(server, clientA, issued);
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ error: 'invalid_grant', error_description: expect.stringMatching(/expired/) });
    await expectCodeRejected(clientA, 'expired', issued.code);
  });

  it('codes live 60 seconds', async () => {
    const issued = await issueCode(server, clientA, userId);
    const { z } = await import('zod');
    const lifetime = await server.db.oneFirst(sql.type(z.object({ seconds: z.number() }))`
      SELECT extract(epoch FROM expires_at - created_at)::float8 AS seconds FROM oauth_authorization_codes WHERE code_hash = ${hashBearerValue(issued.code)}`);
    expect(lifetime).toBeGreaterThan(59);
    expect(lifetime).toBeLessThanOrEqual(60.5);
  });

  it('refuses a wrong code_verifier, and the code is burned', async () => {
    const issued = await issueCode(server, clientA, userId);
    const wrong = await exchangeCode(server, clientA, { ...issued, verifier: 'x'.repeat(43) });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toBe('invalid_grant');
    expect((await exchangeCode(server, clientA, issued)).body.error).toBe('invalid_grant');
    expect(await auditRows(server, 'OAuthCodeExchange')).toContainEqual(
      expect.objectContaining({ outcome: 'failure', details: { reason: 'pkce_mismatch' } }),
    );
  });

  it('refuses a missing code_verifier (PKCE is required of every client)', async () => {
    const issued = await issueCode(server, clientA, userId);
    const response = await postAsClient(server, '/oauth/token', clientA, {
      grant_type: 'authorization_code',
      code: issued.code,
      redirect_uri: issued.redirectUri,
    });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_grant');
  });

  it.each([
    ['another path', 'https://client.example/other'],
    ['a prefix', 'https://client.example/callback/extra'],
    ['different case', 'https://CLIENT.example/callback'],
    ['an added query', 'https://client.example/callback?x=1'],
    ['a trailing slash', 'https://client.example/callback/'],
  ])('refuses a redirect_uri that differs from the authorization request: %s', async (_name, redirectUri) => {
    const issued = await issueCode(server, clientA, userId);
    const response = await exchangeCode(server, clientA, { ...issued, redirectUri });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_grant');
    await expectCodeRejected(clientA, 'redirect_uri_mismatch', issued.code);
  });

  it('refuses a missing redirect_uri', async () => {
    const issued = await issueCode(server, clientA, userId);
    const response = await postAsClient(server, '/oauth/token', clientA, { grant_type: 'authorization_code', code: issued.code, code_verifier: issued.verifier });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_request');
  });

  it("refuses client A's code redeemed by client B", async () => {
    const issued = await issueCode(server, clientA, userId);
    const response = await exchangeCode(server, clientB, issued);
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_grant');
    await expectCodeRejected(clientB, 'issued_to_another_client', issued.code);
    const [row] = (await auditRows(server, 'OAuthCodeRejected')).filter((entry) => entry.client_id === clientB.client.id);
    expect(row?.details).toMatchObject({ issuedTo: clientA.client.id });
  });

  it('refuses a client that may not use the grant type', async () => {
    const service = await server.createClient({ name: 'Service', grantTypes: ['client_credentials'], kind: 'service' });
    const issued = await issueCode(server, service, userId);
    const response = await exchangeCode(server, service, issued);
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('unauthorized_client');
  });

  it('refuses a code whose grant the user revoked', async () => {
    const issued = await issueCode(server, clientA, userId);
    await server.db.query(sql.unsafe`UPDATE oauth_grants SET revoked_at = now() WHERE id = ${issued.grantId}`);
    const response = await exchangeCode(server, clientA, issued);
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_grant');
  });

  it('refuses an unknown code', async () => {
    const response = await postAsClient(server, '/oauth/token', clientA, {
      grant_type: 'authorization_code',
      code: 'not-a-code',
      redirect_uri: 'https://client.example/callback',
      code_verifier: 'x'.repeat(43),
    });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_grant');
  });
});
