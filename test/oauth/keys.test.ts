import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigningKeys } from '../../platform/oauth-server/signing-keys';
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

    const rotation = await server.app.authorizationServer.keys.rotate();
    const newKid = rotation.kid;
    expect(newKid).not.toBe(oldKid);
    expect(rotation.previousKid).toBe(oldKid);
    expect(rotation.retiredAt).toBeInstanceOf(Date);
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
    // The server caches its key set for up to 30 s; the clock jump above is invisible to that cache.
    server.app.authorizationServer.keys.forgetVerificationKeys();
    const pruned = await fetchJwks();
    expect(pruned.keys.map((key) => key.kid)).not.toContain(oldKid);
    expect(pruned.keys.map((key) => key.kid)).toContain(newKid);
    await expect(jwtVerify(before.access_token, createLocalJWKSet(pruned))).rejects.toThrow();
    expect(await introspect(server, client, before.access_token)).toEqual({ active: false });
    expect(await introspect(server, client, after.access_token)).toMatchObject({ active: true });
  });

  it('stores private keys only as encrypted envelopes', async () => {
    const { z } = await import('zod');
    const rows = await server.db.any(sql.type(z.object({ id: z.string(), enc: z.string() }))`SELECT id, private_jwk_enc AS enc FROM oauth_signing_keys`);
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      // v1.<keyId>.<iv>.<ciphertext>.<tag>, base64url parts (platform/integration-crypto.ts).
      expect(row.enc).toMatch(/^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
      // Base64url has no quote, so no JSON member of the key can show; a plain "RSA" could occur by chance in ciphertext.
      expect(() => JSON.parse(row.enc) as unknown).toThrow();
      // And it is the private key: it decrypts to a JWK with the private exponent.
      const jwk = JSON.parse(server.crypto.decrypt(row.enc, { table: 'oauth_signing_keys', column: 'private_jwk_enc', rowId: row.id })) as Record<string, unknown>;
      expect(jwk).toMatchObject({ kty: 'RSA', kid: row.id });
      expect(typeof jwk.d).toBe('string');
    }
  });

  it('imports each private key once per process', async () => {
    const { keys } = server.app.authorizationServer;
    const first = await keys.activeKey();
    const second = await keys.activeKey();
    expect(second.kid).toBe(first.kid);
    expect(second.privateKey).toBe(first.privateKey);
  });

  it('verifies a token signed with a key another process created, although the key set is cached', async () => {
    const warm = await obtainTokens(server, client, userId);
    expect(await introspect(server, client, warm.access_token)).toMatchObject({ active: true });
    // Another api-server instance rotates: this process's cached key set does not know the new kid.
    const elsewhere = new SigningKeys(server.db, server.crypto, server.config.authorizationServer.signingKeyGraceSeconds);
    const { kid } = await elsewhere.rotate();
    const tokens = await obtainTokens(server, client, userId);
    expect(decodeProtectedHeader(tokens.access_token).kid).toBe(kid);
    expect(await introspect(server, client, tokens.access_token)).toMatchObject({ active: true });
  });
});

describe('access-token audience', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer({ LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', OAUTH_ACCESS_TOKEN_AUDIENCE: 'https://api.example.test' });
  });
  afterAll(() => server?.close());

  it('is OAUTH_ACCESS_TOKEN_AUDIENCE when set, and such tokens introspect as active', async () => {
    const client = await server.createClient();
    const userId = (await server.createUser('audience@example.com')).id;
    const tokens = await obtainTokens(server, client, userId);
    expect(decodeJwt(tokens.access_token)).toMatchObject({ iss: server.url, aud: 'https://api.example.test' });
    expect(await introspect(server, client, tokens.access_token)).toMatchObject({ active: true, aud: 'https://api.example.test', iss: server.url });
  });
});
