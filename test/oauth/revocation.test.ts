import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientRegistry } from '../../platform/oauth-server/client-registry';
import { hashBearerValue } from '../../platform/secrets';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import {
  auditRows,
  basicAuth,
  exchangeCode,
  grantOfRefreshToken,
  introspect,
  issueCode,
  obtainTokens,
  postAsClient,
  postForm,
  refresh,
  waitForLockWaiters,
  withGrantLocked,
  type FormResponse,
  type TestClient,
} from './token-helpers';

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

  /** Every token of the family is inactive: those of the first exchange and, when the refresh won, the ones it issued. */
  const expectFamilyDead = async (client: TestClient, first: { access_token: string; refresh_token: string }, refreshed: FormResponse, label: string) => {
    const tokens = [first.access_token, first.refresh_token];
    if (refreshed.status === 200) tokens.push(refreshed.body.access_token as string, refreshed.body.refresh_token as string);
    else expect(refreshed.body.error, label).toBe('invalid_grant');
    for (const token of tokens) expect(await introspect(server, client, token), label).toEqual({ active: false });
  };

  it('a refresh racing a revocation of the same family leaves nothing of the family alive', async () => {
    const outcomes = { refreshWon: 0, revocationWon: 0 };
    for (let round = 0; round < 8; round += 1) {
      const first = await obtainTokens(server, clientA, userId);
      const [refreshed, revoked] = await Promise.all([
        refresh(server, clientA, first.refresh_token),
        postAsClient(server, '/oauth/revoke', clientA, { token: first.refresh_token }),
      ]);
      expect(revoked.status).toBe(200);
      outcomes[refreshed.status === 200 ? 'refreshWon' : 'revocationWon'] += 1;
      await expectFamilyDead(clientA, first, refreshed, `round ${round}`);
    }
    expect(outcomes.refreshWon + outcomes.revocationWon).toBe(8);
  });

  it('a revocation that waits for a refresh in flight also revokes what the refresh issued', async () => {
    // Deterministic version of the race above: the refresh is first in line for the grant lock, the revocation second.
    const first = await obtainTokens(server, clientA, userId);
    const requests = await withGrantLocked(server, await grantOfRefreshToken(server, first.refresh_token), async (holder) => {
      const refreshing = refresh(server, clientA, first.refresh_token);
      await waitForLockWaiters(holder, 1);
      const revoking = postAsClient(server, '/oauth/revoke', clientA, { token: first.refresh_token });
      await waitForLockWaiters(holder, 2);
      return [refreshing, revoking] as const;
    });
    const [refreshed, revoked] = await Promise.all(requests);
    expect(refreshed.status).toBe(200);
    expect(revoked.status).toBe(200);
    await expectFamilyDead(clientA, first, refreshed, 'refresh first');
  });

  it('reuse of a rotated token racing a refresh of the newest one leaves nothing of the family alive', async () => {
    const outcomes = { refreshWon: 0, reuseWon: 0 };
    for (let round = 0; round < 8; round += 1) {
      const first = await obtainTokens(server, clientA, userId);
      const second = (await refresh(server, clientA, first.refresh_token)).body as { access_token: string; refresh_token: string };
      const [reuse, refreshed] = await Promise.all([refresh(server, clientA, first.refresh_token), refresh(server, clientA, second.refresh_token)]);
      expect(reuse.status).toBe(400);
      outcomes[refreshed.status === 200 ? 'refreshWon' : 'reuseWon'] += 1;
      await expectFamilyDead(clientA, second, refreshed, `round ${round}`);
      expect(await introspect(server, clientA, first.access_token), `round ${round}`).toEqual({ active: false });
    }
    expect(outcomes.refreshWon + outcomes.reuseWon).toBe(8);
  });

  it('refresh and code exchange lock the grant before the token or code (the lock order of grant and client revocation)', async () => {
    // While the grant is locked, a refresh must wait for it without holding its token's row lock.
    const tokens = await obtainTokens(server, clientA, userId);
    const refreshing = await withGrantLocked(server, await grantOfRefreshToken(server, tokens.refresh_token), async (holder) => {
      const request = refresh(server, clientA, tokens.refresh_token);
      await waitForLockWaiters(holder, 1);
      await holder.query(sql.unsafe`SELECT id FROM oauth_refresh_tokens WHERE token_hash = ${hashBearerValue(tokens.refresh_token)} FOR UPDATE NOWAIT`);
      return [request] as const;
    });
    expect((await refreshing[0]).status).toBe(200);

    const issued = await issueCode(server, clientA, userId);
    const exchanging = await withGrantLocked(server, issued.grantId, async (holder) => {
      const request = exchangeCode(server, clientA, issued);
      await waitForLockWaiters(holder, 1);
      await holder.query(sql.unsafe`SELECT code_hash FROM oauth_authorization_codes WHERE code_hash = ${hashBearerValue(issued.code)} FOR UPDATE NOWAIT`);
      return [request] as const;
    });
    expect((await exchanging[0]).status).toBe(200);
  });

  it('a client revocation racing refreshes and code exchanges leaves none of its tokens alive', async () => {
    const registry = new ClientRegistry(server.db, server.audit);
    for (let round = 0; round < 4; round += 1) {
      const doomed = await server.createClient({ name: `Doomed ${round}` });
      const first = await obtainTokens(server, doomed, userId);
      const issued = await issueCode(server, doomed, userId);
      const [refreshed, exchanged] = await Promise.all([
        refresh(server, doomed, first.refresh_token),
        exchangeCode(server, doomed, issued),
        registry.revoke(doomed.client.id, { actor: { type: 'operator', id: 'test' }, origin: {} }),
      ]);
      const { z } = await import('zod');
      const live = await server.db.oneFirst(sql.type(z.object({ count: z.number() }))`
        SELECT ((SELECT count(*) FROM oauth_refresh_tokens WHERE client_id = ${doomed.client.id} AND revoked_at IS NULL)
              + (SELECT count(*) FROM oauth_access_tokens WHERE client_id = ${doomed.client.id} AND revoked_at IS NULL))::int AS count`);
      expect(live, `round ${round}: refresh ${refreshed.status}, exchange ${exchanged.status}`).toBe(0);
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
    const audited = JSON.stringify(await auditRows(server, 'OAuthRevoke'));
    expect(audited).not.toContain(tokens.refresh_token);
    expect(audited).not.toContain(tokens.access_token);
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
