import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows, basicAuth, introspect, obtainTokens, postAsClient, postForm, refresh, type TestClient } from './token-helpers';

describe('token introspection (RFC 7662)', () => {
  let server: OAuthTestServer;
  let clientA: TestClient;
  let clientB: TestClient;
  let userId: string;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    clientA = await server.createClient({ name: 'A' });
    clientB = await server.createClient({ name: 'B' });
    userId = (await server.createUser('introspect@example.com')).id;
  });
  afterAll(() => server?.close());

  it('answers an active access token with its claims', async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    const response = await postAsClient(server, '/oauth/introspect', clientA, { token: tokens.access_token });
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.body).toEqual({
      active: true,
      scope: 'properties:read offline_access',
      client_id: clientA.client.id,
      sub: userId,
      aud: server.url,
      iss: server.url,
      exp: expect.any(Number),
      iat: expect.any(Number),
      jti: expect.any(String),
      token_type: 'Bearer',
    });
  });

  it('answers an active refresh token with its claims', async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    const claims = await introspect(server, clientA, tokens.refresh_token, 'refresh_token');
    expect(claims).toEqual({
      active: true,
      scope: 'properties:read offline_access',
      client_id: clientA.client.id,
      sub: userId,
      iss: server.url,
      exp: expect.any(Number),
      iat: expect.any(Number),
      token_type: 'refresh_token',
    });
    expect((claims.exp as number) - (claims.iat as number)).toBeGreaterThan(server.config.lifetimes.refreshTokenSeconds - 60);
  });

  it('uses the hint for lookup order only: a wrong hint still finds the token', async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    expect(await introspect(server, clientA, tokens.access_token, 'refresh_token')).toMatchObject({ active: true, token_type: 'Bearer' });
    expect(await introspect(server, clientA, tokens.refresh_token, 'access_token')).toMatchObject({ active: true, token_type: 'refresh_token' });
    expect(await introspect(server, clientA, tokens.refresh_token, 'something_else')).toMatchObject({ active: true });
  });

  it("client B cannot introspect client A's tokens", async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    expect(await introspect(server, clientB, tokens.access_token)).toEqual({ active: false });
    expect(await introspect(server, clientB, tokens.refresh_token)).toEqual({ active: false });
    // Both attempts are audited, naming the asking client, the owner, why and from where, never the token.
    const denied = await auditRows(server, 'OAuthIntrospectionDenied');
    for (const kind of ['access_token', 'refresh_token']) {
      expect(denied).toContainEqual(
        expect.objectContaining({
          outcome: 'failure',
          actor_type: 'client',
          client_id: clientB.client.id,
          ip_address: '127.0.0.1',
          details: { reason: 'issued_to_another_client', kind, issuedTo: clientA.client.id },
        }),
      );
    }
    expect(JSON.stringify(denied)).not.toContain(tokens.access_token);
    expect(JSON.stringify(denied)).not.toContain(tokens.refresh_token);
    // The owner's own introspection is not an attack.
    expect(await introspect(server, clientA, tokens.access_token)).toMatchObject({ active: true });
    expect((await auditRows(server, 'OAuthIntrospectionDenied')).filter((row) => row.client_id === clientA.client.id)).toEqual([]);
  });

  it('unknown, malformed and forged tokens are inactive', async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    const [header, payload] = tokens.access_token.split('.');
    for (const token of ['unknown', 'a.b.c', `${header}.${payload}.`, `${header}.${payload}.AAAA`, 'x'.repeat(4000), tokens.access_token.slice(0, -2)]) {
      expect(await introspect(server, clientA, token), token.slice(0, 20)).toEqual({ active: false });
    }
  });

  it('expired access tokens and expired refresh tokens are inactive', async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    await server.db.query(sql.unsafe`UPDATE oauth_refresh_tokens SET expires_at = now() - interval '1 second' WHERE client_id = ${clientA.client.id}`);
    expect(await introspect(server, clientA, tokens.refresh_token)).toEqual({ active: false });
    await server.db.query(sql.unsafe`UPDATE oauth_access_tokens SET expires_at = now() - interval '1 second' WHERE client_id = ${clientA.client.id}`);
    expect(await introspect(server, clientA, tokens.access_token)).toEqual({ active: false });
  });

  it('revoked tokens, revoked grants and rotated refresh tokens are inactive at once', async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    const next = await refresh(server, clientA, tokens.refresh_token);
    expect(await introspect(server, clientA, tokens.refresh_token)).toEqual({ active: false });
    await postAsClient(server, '/oauth/revoke', clientA, { token: next.body.access_token as string });
    expect(await introspect(server, clientA, next.body.access_token as string)).toEqual({ active: false });
    expect(await introspect(server, clientA, next.body.refresh_token as string)).toMatchObject({ active: true });
    await server.db.query(sql.unsafe`UPDATE oauth_grants SET revoked_at = now() WHERE client_id = ${clientA.client.id} AND user_id = ${userId}`);
    expect(await introspect(server, clientA, next.body.refresh_token as string)).toEqual({ active: false });
    expect(await introspect(server, clientA, tokens.access_token)).toEqual({ active: false });
  });

  it("a revoked client's tokens are inactive at once, and the revoked client can no longer introspect", async () => {
    const client = await server.createClient({ name: 'Soon revoked' });
    const watcher = client;
    const tokens = await obtainTokens(server, client, userId);
    expect(await introspect(server, watcher, tokens.access_token)).toMatchObject({ active: true });
    await server.db.query(sql.unsafe`UPDATE oauth_clients SET revoked_at = now() WHERE id = ${client.client.id}`);
    const response = await postAsClient(server, '/oauth/introspect', client, { token: tokens.access_token });
    expect(response.status).toBe(401);
    expect(response.body.error).toBe('invalid_client');
    // Nobody else learns anything about them either.
    expect(await introspect(server, clientB, tokens.access_token)).toEqual({ active: false });
    expect(await introspect(server, clientB, tokens.refresh_token)).toEqual({ active: false });
  });

  it('requires an authenticated confidential client', async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    const anonymous = await postForm(server, '/oauth/introspect', { token: tokens.access_token });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error).toBe('invalid_client');
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic /);

    const wrongSecret = await postForm(server, '/oauth/introspect', { token: tokens.access_token }, { authorization: basicAuth(clientA.client.id, 'nope') });
    expect(wrongSecret.status).toBe(401);

    const publicClient = await server.createClient({ tokenEndpointAuthMethod: 'none' });
    const asPublic = await postForm(server, '/oauth/introspect', { token: tokens.access_token, client_id: publicClient.client.id });
    expect(asPublic.status).toBe(401);
    expect(asPublic.body.error).toBe('invalid_client');
  });

  it('requires token', async () => {
    const response = await postAsClient(server, '/oauth/introspect', clientA, {});
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_request');
  });
});
