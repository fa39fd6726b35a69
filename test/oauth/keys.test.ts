import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { introspect, obtainTokens, type TestClient } from './token-helpers';

describe('signing keys and JWKS', () => {
  let server: OAuthTestServer;
  let client: TestClient;
  let userId: string;

  beforeAll(async () => {
    server = await startOAuthTestServer({ LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' });
    client = await server.createClient();
    userId = (await server.createUser('keys@example.com')).id;
  });
  afterAll(() => server?.close());

  const fetchJwks = async (): Promise<JSONWebKeySet> => {
    const response = await fetch(`${server.url}/oauth/jwks`);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('public, max-age=300');
    return (await response.json()) as JSONWebKeySet;
  };

  it('serves public RSA keys only, and an access token verifies against them with jose', async () => {
    const tokens = await obtainTokens(server, client, userId);
    const jwks = await fetchJwks();
    expect(jwks.keys.length).toBeGreaterThan(0);
    for (const key of jwks.keys) {
      expect(key).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig' });
      for (const privatePart of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(key).not.toHaveProperty(privatePart);
    }
    const { payload, protectedHeader } = await jwtVerify(tokens.access_token, createLocalJWKSet(jwks), {
      issuer: server.url,
      audience: server.url,
      typ: 'at+jwt',
    });
    expect(protectedHeader.kid).toBe(jwks.keys[0]!.kid);
    expect(payload.client_id).toBe(client.client.id);
  });

  it('after a rotation, new tokens carry the new kid and old tokens keep verifying and introspecting during the grace period', async () => {
    const before = await obtainTokens(server, client, userId);
    const oldKid = decodeProtectedHeader(before.access_token).kid!;

    const newKid = await server.app.authorizationServer.keys.rotate();
    expect(newKid).not.toBe(oldKid);
    const after = await obtainTokens(server, client, userId);
    expect(decodeProtectedHeader(after.access_token).kid).toBe(newKid);

    const jwks = await fetchJwks();
    expect(jwks.keys.map((key) => key.kid)).toEqual(expect.arrayContaining([oldKid, newKid]));
    await expect(jwtVerify(before.access_token, createLocalJWKSet(jwks))).resolves.toBeDefined();
    await expect(jwtVerify(after.access_token, createLocalJWKSet(jwks))).resolves.toBeDefined();
    expect(await introspect(server, client, before.access_token)).toMatchObject({ active: true });
    expect(await introspect(server, client, after.access_token)).toMatchObject({ active: true });

    // The grace period ends: the retired key leaves the JWKS and what it signed is no longer accepted.
    await server.db.query(sql.unsafe`
      UPDATE oauth_signing_keys SET retired_at = now() - make_interval(secs => ${server.config.authorizationServer.signingKeyGraceSeconds + 60})
      WHERE id = ${oldKid}`);
    const pruned = await fetchJwks();
    expect(pruned.keys.map((key) => key.kid)).not.toContain(oldKid);
    expect(pruned.keys.map((key) => key.kid)).toContain(newKid);
    await expect(jwtVerify(before.access_token, createLocalJWKSet(pruned))).rejects.toThrow();
    expect(await introspect(server, client, before.access_token)).toEqual({ active: false });
    expect(await introspect(server, client, after.access_token)).toMatchObject({ active: true });
  });

  it('stores private keys only as encrypted envelopes', async () => {
    const { z } = await import('zod');
    const rows = await server.db.any(sql.type(z.object({ enc: z.string() }))`SELECT private_jwk_enc AS enc FROM oauth_signing_keys`);
    for (const row of rows) {
      expect(row.enc).not.toContain('"d"');
      expect(row.enc).not.toContain('RSA');
    }
  });
});
