import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailedClientAuthentications } from '../../api/plugins/oauth/client-request';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows, basicAuth, postAsClient, postForm, type TestClient } from './token-helpers';

/**
 * The per-address limit on failed client authentication: the per-route rate limit is keyed on the
 * claimed client id too, which the caller chooses, so rotating ids must not buy fresh attempts nor
 * an audit row per guess.
 */
describe('failed client authentication, limited per address', () => {
  let server: OAuthTestServer;
  let client: TestClient;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    client = await server.createClient({ name: 'Legitimate', grantTypes: ['client_credentials'], kind: 'service', redirectUris: [] });
  });
  afterAll(() => server?.close());

  const guess = () => postForm(server, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basicAuth(`c_${randomBytes(8).toString('hex')}`, 'guess') });

  it('after 30 failures a minute from one address, answers 429 without auditing each further attempt, but for clients that authenticated from there', async () => {
    const limit = server.app.authorizationServer.failedClientAuthentications.maxFailures;
    expect(limit).toBe(30);
    // The legitimate client calls from this address before the junk starts, as a voice platform does all the time.
    expect((await postAsClient(server, '/oauth/token', client, { grant_type: 'client_credentials' })).status).toBe(200);
    const quiet = await server.createClient({ name: 'Not seen from here', grantTypes: ['client_credentials'], kind: 'service', redirectUris: [] });
    for (let attempt = 0; attempt < limit; attempt += 1) expect((await guess()).status).toBe(401);

    const refused = await guess();
    expect(refused.status).toBe(429);
    expect(refused.body.error).toBe('temporarily_unavailable');
    // Every client endpoint shares the limit; a client that authenticated from that address is not locked out by another caller's junk.
    expect((await postForm(server, '/oauth/introspect', { token: 'x' }, { authorization: basicAuth('c_other', 'guess') })).status).toBe(429);
    expect((await postForm(server, '/oauth/revoke', { token: 'x', client_id: 'c_other' })).status).toBe(429);
    expect((await postAsClient(server, '/oauth/token', client, { grant_type: 'client_credentials' })).status).toBe(200);
    // Its id with a wrong secret is checked and refused, unaudited; a client never seen from the address waits like the junk.
    expect((await postForm(server, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basicAuth(client.client.id, 'wrong') })).status).toBe(429);
    expect((await postAsClient(server, '/oauth/token', quiet, { grant_type: 'client_credentials' })).status).toBe(429);
    for (let attempt = 0; attempt < 10; attempt += 1) await guess();

    expect(await auditRows(server, 'OAuthClientAuthFailed')).toHaveLength(limit);
    const throttled = await auditRows(server, 'OAuthClientAuthThrottled');
    expect(throttled).toHaveLength(1);
    expect(throttled[0]).toMatchObject({ outcome: 'failure', ip_address: '127.0.0.1', details: { endpoint: 'token', failures: 30, window_seconds: 60 } });
  });
});

describe('FailedClientAuthentications', () => {
  it('counts failures per address in a fixed window and forgets them when it ends', () => {
    const limiter = new FailedClientAuthentications(3, 1_000);
    expect(limiter.recordFailure('10.0.0.1', 0)).toBe(false);
    expect(limiter.recordFailure('10.0.0.1', 10)).toBe(false);
    expect(limiter.allowed('10.0.0.1', 20)).toBe(true);
    expect(limiter.recordFailure('10.0.0.1', 20)).toBe(true);
    expect(limiter.allowed('10.0.0.1', 30)).toBe(false);
    expect(limiter.allowed('10.0.0.2', 30)).toBe(true);
    expect(limiter.allowed('10.0.0.1', 1_000)).toBe(true);
    expect(limiter.recordFailure('10.0.0.1', 1_000)).toBe(false);
  });

  it('remembers the clients that authenticated from an address for a while, per address', () => {
    const limiter = new FailedClientAuthentications(3, 1_000, 100, 10_000);
    limiter.recordSuccess('10.0.0.1', 'c_voice', 0);
    expect(limiter.authenticatedRecently('10.0.0.1', 'c_voice', 9_999)).toBe(true);
    expect(limiter.authenticatedRecently('10.0.0.2', 'c_voice', 1)).toBe(false);
    expect(limiter.authenticatedRecently('10.0.0.1', 'c_other', 1)).toBe(false);
    expect(limiter.authenticatedRecently('10.0.0.1', undefined, 1)).toBe(false);
    expect(limiter.authenticatedRecently('10.0.0.1', 'c_voice', 10_000)).toBe(false);
    limiter.recordSuccess('10.0.0.1', 'c_voice', 10_000);
    expect(limiter.authenticatedRecently('10.0.0.1', 'c_voice', 19_999)).toBe(true);
  });

  it('keeps its memory of successes bounded: clients per address, and addresses, the stalest dropped first', () => {
    const limiter = new FailedClientAuthentications(3, 1_000, 2, 60_000, 2);
    for (const [at, clientId] of ['c_a', 'c_b', 'c_c'].entries()) limiter.recordSuccess('10.0.0.1', clientId, at);
    expect(['c_a', 'c_b', 'c_c'].map((clientId) => limiter.authenticatedRecently('10.0.0.1', clientId, 3))).toEqual([false, true, true]);
    limiter.recordSuccess('10.0.0.2', 'c_a', 4);
    limiter.recordSuccess('10.0.0.1', 'c_b', 5);
    limiter.recordSuccess('10.0.0.3', 'c_a', 6);
    // 10.0.0.2 had the stalest success when room was needed.
    expect(limiter.authenticatedRecently('10.0.0.2', 'c_a', 7)).toBe(false);
    expect(limiter.authenticatedRecently('10.0.0.1', 'c_b', 7)).toBe(true);
    expect(limiter.authenticatedRecently('10.0.0.3', 'c_a', 7)).toBe(true);
  });

  it('keeps its table bounded, dropping the oldest windows first', () => {
    const limiter = new FailedClientAuthentications(2, 60_000, 3);
    for (const ip of ['a', 'b', 'c']) limiter.recordFailure(ip, 0);
    limiter.recordFailure('a', 1);
    limiter.recordFailure('d', 2);
    // 'a' was the oldest window and was dropped to make room; 'd' is counted.
    expect(limiter.allowed('a', 3)).toBe(true);
    expect(limiter.recordFailure('d', 3)).toBe(true);
    expect(limiter.allowed('d', 4)).toBe(false);
  });
});
