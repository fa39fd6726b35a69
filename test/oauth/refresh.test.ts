import { decodeJwt } from 'jose';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBearerValue } from '../../platform/secrets';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows, introspect, obtainTokens, refresh, type TestClient } from './token-helpers';

describe('refresh token grant', () => {
  let server: OAuthTestServer;
  let client: TestClient;
  let otherClient: TestClient;
  let userId: string;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    client = await server.createClient();
    otherClient = await server.createClient({ name: 'Other' });
    userId = (await server.createUser('refresh@example.com')).id;
  });
  afterAll(() => server?.close());

  const refreshTokenExpiry = (token: string) =>
    server.db.oneFirst(sql.type(z.object({ expiresAt: z.number() }))`
      SELECT expires_at AS "expiresAt" FROM oauth_refresh_tokens WHERE token_hash = ${hashBearerValue(token)}`);

  it('rotates the refresh token on every use', async () => {
    const first = await obtainTokens(server, client, userId);
    const second = await refresh(server, client, first.refresh_token);
    expect(second.status).toBe(200);
    expect(second.headers.get('cache-control')).toBe('no-store');
    expect(second.body).toMatchObject({ token_type: 'Bearer', scope: first.scope, expires_in: server.config.lifetimes.accessTokenSeconds });
    expect(second.body.refresh_token).not.toBe(first.refresh_token);
    expect(second.body.access_token).not.toBe(first.access_token);
    expect(decodeJwt(second.body.access_token as string)).toMatchObject({ sub: userId, client_id: client.client.id });

    const third = await refresh(server, client, second.body.refresh_token as string);
    expect(third.status).toBe(200);
    expect(await introspect(server, client, first.refresh_token)).toEqual({ active: false });
    expect(await introspect(server, client, second.body.refresh_token as string)).toEqual({ active: false });
    expect(await introspect(server, client, third.body.refresh_token as string)).toMatchObject({ active: true });
    expect(await auditRows(server, 'OAuthTokenRefresh')).toContainEqual(expect.objectContaining({ outcome: 'success', client_id: client.client.id, user_id: userId }));
    // The previous access token stays valid until it expires; only reuse or revocation ends the family.
    expect(await introspect(server, client, first.access_token)).toMatchObject({ active: true });
  });

  it('reuse of a rotated token revokes the whole family, the newest tokens included, and is audited', async () => {
    const first = await obtainTokens(server, client, userId);
    const second = await refresh(server, client, first.refresh_token);
    const newest = second.body as { access_token: string; refresh_token: string };
    // A second, unrelated family of the same user and client must survive.
    const unrelated = await obtainTokens(server, client, userId);

    const reuse = await refresh(server, client, first.refresh_token);
    expect(reuse.status).toBe(400);
    expect(reuse.body.error).toBe('invalid_grant');

    expect(await introspect(server, client, newest.access_token)).toEqual({ active: false });
    expect(await introspect(server, client, newest.refresh_token)).toEqual({ active: false });
    expect(await introspect(server, client, first.access_token)).toEqual({ active: false });
    expect((await refresh(server, client, newest.refresh_token)).body.error).toBe('invalid_grant');
    expect(await introspect(server, client, unrelated.access_token)).toMatchObject({ active: true });
    expect(await introspect(server, client, unrelated.refresh_token)).toMatchObject({ active: true });

    const audited = await auditRows(server, 'OAuthRefreshTokenReuse');
    expect(audited).toContainEqual(expect.objectContaining({ outcome: 'failure', client_id: client.client.id, user_id: userId, ip_address: '127.0.0.1' }));
    expect(JSON.stringify(audited)).not.toContain(first.refresh_token);
  });

  it('narrows only the access token: the new refresh token keeps the original scope (RFC 6749 section 6)', async () => {
    const original = 'properties:read reservations:read offline_access';
    const first = await obtainTokens(server, client, userId, original.split(' '));
    const narrowed = await refresh(server, client, first.refresh_token, { scope: 'properties:read' });
    expect(narrowed.status).toBe(200);
    expect(narrowed.body.scope).toBe('properties:read');
    expect(decodeJwt(narrowed.body.access_token as string).scope).toBe('properties:read');
    expect(await introspect(server, client, narrowed.body.refresh_token as string)).toMatchObject({ active: true, scope: original });

    // The narrowed refresh's refresh token may still ask for the whole original scope.
    const restored = await refresh(server, client, narrowed.body.refresh_token as string, { scope: 'properties:read reservations:read' });
    expect(restored.status).toBe(200);
    expect(restored.body.scope).toBe('properties:read reservations:read');
    const unnarrowed = await refresh(server, client, restored.body.refresh_token as string);
    expect(unnarrowed.status).toBe(200);
    expect(unnarrowed.body.scope).toBe(original);
  });

  it('refuses widening the scope beyond what was granted', async () => {
    const first = await obtainTokens(server, client, userId, ['properties:read', 'offline_access']);
    const widened = await refresh(server, client, first.refresh_token, { scope: 'properties:read reservations:read' });
    expect(widened.status).toBe(400);
    expect(widened.body.error).toBe('invalid_scope');
    // Refused without harm: the token still works.
    expect((await refresh(server, client, first.refresh_token)).status).toBe(200);
  });

  it("refuses another client's refresh token without harming it", async () => {
    const first = await obtainTokens(server, client, userId);
    const stolen = await refresh(server, otherClient, first.refresh_token);
    expect(stolen.status).toBe(400);
    expect(stolen.body.error).toBe('invalid_grant');
    expect((await refresh(server, client, first.refresh_token)).status).toBe(200);
    const audited = await auditRows(server, 'OAuthRefreshTokenRejected');
    expect(audited).toContainEqual(
      expect.objectContaining({
        outcome: 'failure',
        client_id: otherClient.client.id,
        ip_address: '127.0.0.1',
        details: expect.objectContaining({ reason: 'issued_to_another_client', issuedTo: client.client.id }),
      }),
    );
    expect(JSON.stringify(audited)).not.toContain(first.refresh_token);
  });

  it('refuses an expired refresh token', async () => {
    const first = await obtainTokens(server, client, userId);
    await server.db.query(sql.unsafe`
      UPDATE oauth_refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = ${hashBearerValue(first.refresh_token)}`);
    const response = await refresh(server, client, first.refresh_token);
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_grant');
  });

  it('refuses a refresh token whose grant was revoked', async () => {
    const first = await obtainTokens(server, client, userId);
    await server.db.query(sql.unsafe`
      UPDATE oauth_grants SET revoked_at = now() WHERE id = (SELECT grant_id FROM oauth_refresh_tokens WHERE token_hash = ${hashBearerValue(first.refresh_token)})`);
    expect((await refresh(server, client, first.refresh_token)).body.error).toBe('invalid_grant');
  });

  it('refresh tokens live REFRESH_TOKEN_TTL (7 days) for third-party clients', async () => {
    const first = await obtainTokens(server, client, userId);
    const expected = Date.now() + server.config.lifetimes.refreshTokenSeconds * 1000;
    expect(Math.abs((await refreshTokenExpiry(first.refresh_token)) - expected)).toBeLessThan(60_000);
    expect(server.config.lifetimes.refreshTokenSeconds).toBe(7 * 24 * 3600);
  });

  it('refresh tokens of voice clients live DEVICE_REFRESH_TOKEN_TTL (1 year), renewed on every refresh', async () => {
    const voice = await server.createClient({ name: 'Alexa', kind: 'voice', redirectUris: ['https://pitangui.amazon.com/api/skill/link/M123'] });
    const first = await obtainTokens(server, voice, userId, ['properties:read', 'offline_access']);
    const year = server.config.lifetimes.deviceRefreshTokenSeconds * 1000;
    expect(server.config.lifetimes.deviceRefreshTokenSeconds).toBe(365 * 24 * 3600);
    expect(Math.abs((await refreshTokenExpiry(first.refresh_token)) - (Date.now() + year))).toBeLessThan(60_000);
    const second = await refresh(server, voice, first.refresh_token);
    expect(Math.abs((await refreshTokenExpiry(second.body.refresh_token as string)) - (Date.now() + year))).toBeLessThan(60_000);
  });

  it('two concurrent uses of one refresh token: one wins, the other is treated as reuse', async () => {
    const first = await obtainTokens(server, client, userId);
    const results = await Promise.all([refresh(server, client, first.refresh_token), refresh(server, client, first.refresh_token)]);
    expect(results.map((result) => result.status).sort()).toEqual([200, 400]);
  });

  it('requires refresh_token', async () => {
    const response = await refresh(server, client, '');
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_request');
  });
});
