import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows, basicAuth, introspect, obtainTokens, postAsClient, postForm, refresh, type TestClient } from './token-helpers';

describe('token revocation (RFC 7009)', () => {
  let server: OAuthTestServer;
  let clientA: TestClient;
  let clientB: TestClient;
  let userId: string;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    clientA = await server.createClient({ name: 'A' });
    clientB = await server.createClient({ name: 'B' });
    userId = (await server.createUser('revoke@example.com')).id;
  });
  afterAll(() => server?.close());

  it('revoking a refresh token revokes its whole family (refresh and access tokens)', async () => {
    const first = await obtainTokens(server, clientA, userId);
    const second = (await refresh(server, clientA, first.refresh_token)).body as { access_token: string; refresh_token: string };
    const other = await obtainTokens(server, clientA, userId);

    const response = await postAsClient(server, '/oauth/revoke', clientA, { token: second.refresh_token, token_type_hint: 'refresh_token' });
    expect(response.status).toBe(200);
    expect(response.text).toBe('');
    expect(response.headers.get('cache-control')).toBe('no-store');

    for (const token of [first.access_token, second.access_token, second.refresh_token]) {
      expect(await introspect(server, clientA, token)).toEqual({ active: false });
    }
    expect((await refresh(server, clientA, second.refresh_token)).body.error).toBe('invalid_grant');
    expect(await introspect(server, clientA, other.access_token)).toMatchObject({ active: true });
    expect(await introspect(server, clientA, other.refresh_token)).toMatchObject({ active: true });

    const audited = await auditRows(server, 'OAuthRevoke');
    expect(audited).toContainEqual(
      expect.objectContaining({ outcome: 'success', client_id: clientA.client.id, user_id: userId, ip_address: '127.0.0.1', details: { kind: 'refresh_token', revoked: true } }),
    );
    expect(JSON.stringify(audited)).not.toContain(second.refresh_token);
  });

  it('a refresh racing a revocation of the same family leaves nothing of the family alive', async () => {
    for (let round = 0; round < 8; round += 1) {
      const first = await obtainTokens(server, clientA, userId);
      const [refreshed] = await Promise.all([
        refresh(server, clientA, first.refresh_token),
        postAsClient(server, '/oauth/revoke', clientA, { token: first.refresh_token }),
      ]);
      if (refreshed.status === 200) {
        expect(await introspect(server, clientA, refreshed.body.refresh_token as string), `round ${round}`).toEqual({ active: false });
        expect(await introspect(server, clientA, refreshed.body.access_token as string), `round ${round}`).toEqual({ active: false });
      }
    }
  });

  it('reuse of a rotated token racing a refresh of the newest one leaves nothing of the family alive', async () => {
    for (let round = 0; round < 8; round += 1) {
      const first = await obtainTokens(server, clientA, userId);
      const second = (await refresh(server, clientA, first.refresh_token)).body as { refresh_token: string };
      const [reuse, refreshed] = await Promise.all([refresh(server, clientA, first.refresh_token), refresh(server, clientA, second.refresh_token)]);
      expect(reuse.status).toBe(400);
      if (refreshed.status === 200) {
        expect(await introspect(server, clientA, refreshed.body.refresh_token as string), `round ${round}`).toEqual({ active: false });
      }
    }
  });

  it('revoking an access token ends that token only', async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    const response = await postAsClient(server, '/oauth/revoke', clientA, { token: tokens.access_token, token_type_hint: 'access_token' });
    expect(response.status).toBe(200);
    expect(await introspect(server, clientA, tokens.access_token)).toEqual({ active: false });
    expect(await introspect(server, clientA, tokens.refresh_token)).toMatchObject({ active: true });
    expect(JSON.stringify(await auditRows(server, 'OAuthRevoke'))).not.toContain(tokens.access_token);
  });

  it('honours a wrong hint without trusting it', async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    expect((await postAsClient(server, '/oauth/revoke', clientA, { token: tokens.refresh_token, token_type_hint: 'access_token' })).status).toBe(200);
    expect(await introspect(server, clientA, tokens.refresh_token)).toEqual({ active: false });
    const more = await obtainTokens(server, clientA, userId);
    expect((await postAsClient(server, '/oauth/revoke', clientA, { token: more.access_token, token_type_hint: 'refresh_token' })).status).toBe(200);
    expect(await introspect(server, clientA, more.access_token)).toEqual({ active: false });
    const unknownHint = await obtainTokens(server, clientA, userId);
    expect((await postAsClient(server, '/oauth/revoke', clientA, { token: unknownHint.access_token, token_type_hint: 'id_token' })).status).toBe(200);
    expect(await introspect(server, clientA, unknownHint.access_token)).toEqual({ active: false });
  });

  it("leaves another client's tokens alone, and still answers 200", async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    expect((await postAsClient(server, '/oauth/revoke', clientB, { token: tokens.refresh_token })).status).toBe(200);
    expect((await postAsClient(server, '/oauth/revoke', clientB, { token: tokens.access_token })).status).toBe(200);
    expect(await introspect(server, clientA, tokens.refresh_token)).toMatchObject({ active: true });
    expect(await introspect(server, clientA, tokens.access_token)).toMatchObject({ active: true });
    expect(await auditRows(server, 'OAuthRevoke')).toContainEqual(
      expect.objectContaining({ outcome: 'failure', client_id: clientB.client.id, details: expect.objectContaining({ revoked: false }) }),
    );
  });

  it('answers 200 for unknown tokens and for tokens already revoked', async () => {
    expect((await postAsClient(server, '/oauth/revoke', clientA, { token: 'never-issued' })).status).toBe(200);
    expect((await postAsClient(server, '/oauth/revoke', clientA, { token: 'a.b.c' })).status).toBe(200);
    const tokens = await obtainTokens(server, clientA, userId);
    expect((await postAsClient(server, '/oauth/revoke', clientA, { token: tokens.refresh_token })).status).toBe(200);
    expect((await postAsClient(server, '/oauth/revoke', clientA, { token: tokens.refresh_token })).status).toBe(200);
  });

  it('public clients may revoke their own tokens with client_id alone', async () => {
    const publicClient = await server.createClient({ tokenEndpointAuthMethod: 'none' });
    const tokens = await obtainTokens(server, publicClient, userId);
    expect((await postForm(server, '/oauth/revoke', { token: tokens.refresh_token, client_id: publicClient.client.id })).status).toBe(200);
    // The family is revoked: refreshing no longer works.
    expect((await refresh(server, publicClient, tokens.refresh_token)).body.error).toBe('invalid_grant');
  });

  it('requires client authentication and a token', async () => {
    const tokens = await obtainTokens(server, clientA, userId);
    const anonymous = await postForm(server, '/oauth/revoke', { token: tokens.refresh_token });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error).toBe('invalid_client');
    const wrong = await postForm(server, '/oauth/revoke', { token: tokens.refresh_token }, { authorization: basicAuth(clientA.client.id, 'bad') });
    expect(wrong.status).toBe(401);
    expect(await introspect(server, clientA, tokens.refresh_token)).toMatchObject({ active: true });
    const missing = await postAsClient(server, '/oauth/revoke', clientA, {});
    expect(missing.status).toBe(400);
    expect(missing.body.error).toBe('invalid_request');
  });
});
