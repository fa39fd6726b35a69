import { createPrivateKey } from 'node:crypto';
import { SignJWT, type JWTPayload } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { generateServiceAccountKey, HOME_GRAPH_SCOPE, startFakeGoogleHome, type FakeGoogleHome } from '../../fakes/google-home';

const HOUR = 3600 * 1000;

/** The fake service-account token endpoint and Home Graph, over HTTP, as shared/protocols.md "Google Home" describes the real ones. */
describe('fake Google Home', () => {
  let home: FakeGoogleHome;
  let now = Date.parse('2031-01-01T00:00:00Z');
  const key = generateServiceAccountKey();
  const keyFile = JSON.parse(key.json) as { client_email: string; private_key: string; private_key_id: string };

  afterEach(async () => {
    await home?.close();
  });

  async function start() {
    now = Date.parse('2031-01-01T00:00:00Z');
    home = await startFakeGoogleHome({ serviceAccount: key.account, clock: () => now });
  }

  function assertion(overrides: { claims?: JWTPayload; kid?: string; privateKeyPem?: string; lifetimeSeconds?: number; audience?: string } = {}) {
    const issuedAt = Math.floor(now / 1000);
    return new SignJWT({ scope: HOME_GRAPH_SCOPE, ...overrides.claims })
      .setProtectedHeader({ alg: 'RS256', kid: overrides.kid ?? keyFile.private_key_id })
      .setIssuer(keyFile.client_email)
      .setSubject(keyFile.client_email)
      .setAudience(overrides.audience ?? home.tokenUrl)
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + (overrides.lifetimeSeconds ?? 3600))
      .sign(createPrivateKey(overrides.privateKeyPem ?? keyFile.private_key));
  }

  async function exchange(jwt: string, grantType = 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
    const response = await fetch(home.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: grantType, assertion: jwt }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  async function accessToken() {
    return (await exchange(await assertion())).body.access_token as string;
  }

  async function homeGraph(method: 'POST' | 'DELETE', path: string, token: string | undefined, body?: object) {
    const response = await fetch(`${home.homeGraphUrl}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: response.status, body: (await response.json()) as { error?: { code: number; status: string } } & Record<string, unknown> };
  }

  it('issues hour-long access tokens for assertions signed with the service account key', async () => {
    await start();
    const { status, body } = await exchange(await assertion());
    expect(status).toBe(200);
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 3600, access_token: expect.stringMatching(/^ya29\./) });
    expect(home.tokenExchanges()).toBe(1);
  });

  it('refuses assertions Google would refuse', async () => {
    await start();
    const otherKey = JSON.parse(generateServiceAccountKey().json) as { private_key: string };
    const refusals = [
      await exchange(await assertion({ privateKeyPem: otherKey.private_key })),
      await exchange(await assertion({ kid: 'deleted-key' })),
      await exchange(await assertion({ audience: 'https://oauth2.googleapis.com/token' })),
      await exchange(await assertion({ lifetimeSeconds: 7200 })),
      await exchange(await assertion({ claims: { scope: 'https://www.googleapis.com/auth/cloud-platform' } })),
      await exchange('not-a-jwt'),
      await exchange(await assertion(), 'client_credentials'),
    ];
    expect(refusals.map(({ status, body }) => [status, body.error])).toEqual([
      [400, 'invalid_grant'],
      [400, 'invalid_grant'],
      [400, 'invalid_grant'],
      [400, 'invalid_grant'],
      [400, 'invalid_scope'],
      [400, 'invalid_grant'],
      [400, 'unsupported_grant_type'],
    ]);
    expect(refusals[0]!.body.error_description).toBe('Invalid JWT Signature.');
    const stale = await assertion();
    now += HOUR + 1000;
    expect(await exchange(stale)).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    expect(home.tokenExchanges()).toBe(0);
  });

  it('serves Home Graph only with a live access token', async () => {
    await start();
    home.linkAgentUser('user-1');
    const token = await accessToken();
    expect(await homeGraph('POST', '/devices:requestSync', undefined, { agentUserId: 'user-1', async: true })).toMatchObject({ status: 401, body: { error: { status: 'UNAUTHENTICATED' } } });
    expect(await homeGraph('POST', '/devices:requestSync', token, { agentUserId: 'user-1', async: true })).toMatchObject({ status: 200 });
    now += HOUR;
    expect(await homeGraph('POST', '/devices:requestSync', token, { agentUserId: 'user-1', async: true })).toMatchObject({ status: 401 });
    expect(home.expiredTokenCalls()).toBe(1);
    expect(home.syncRequests('user-1')).toBe(1);
  });

  it('knows linked agent users only: requestSync and reports 404 for the others, and after DELETE', async () => {
    await start();
    const token = await accessToken();
    const report = (agentUserId: string) =>
      homeGraph('POST', '/devices:reportStateAndNotification', token, { requestId: 'r-1', agentUserId, payload: { devices: { states: { 'property-1': { online: true, occupancy: 'OCCUPIED' } } } } });
    expect(await homeGraph('POST', '/devices:requestSync', token, { agentUserId: 'stranger', async: true })).toMatchObject({ status: 404, body: { error: { status: 'NOT_FOUND' } } });
    expect(await report('stranger')).toMatchObject({ status: 404 });

    home.linkAgentUser('user-1');
    expect(await report('user-1')).toMatchObject({ status: 200, body: { requestId: 'r-1' } });
    expect(home.reports('user-1')).toEqual([{ requestId: 'r-1', states: { 'property-1': { online: true, occupancy: 'OCCUPIED' } }, at: now }]);
    expect(await homeGraph('POST', '/devices:reportStateAndNotification', token, { requestId: 'r-2', agentUserId: 'user-1', payload: {} })).toMatchObject({ status: 400 });

    expect(await homeGraph('DELETE', '/agentUsers/user-1?requestId=d-1', token)).toMatchObject({ status: 200 });
    expect(home.isLinked('user-1')).toBe(false);
    expect(await homeGraph('DELETE', '/agentUsers/user-1?requestId=d-2', token)).toMatchObject({ status: 404 });
    expect(await report('user-1')).toMatchObject({ status: 404 });
    expect(home.deletes('user-1')).toBe(1);
  });

  it('fails as scripted: 5xx and 429 once each, then permission denied', async () => {
    await start();
    home.linkAgentUser('user-1');
    home.switches.failNext(1, 503, 'token');
    expect(await exchange(await assertion())).toMatchObject({ status: 503 });
    const token = await accessToken();
    home.switches.failNext(2, 429, 'requestSync');
    const sync = () => homeGraph('POST', '/devices:requestSync', token, { agentUserId: 'user-1', async: true });
    expect((await sync()).status).toBe(429);
    expect((await sync()).body.error?.status).toBe('RESOURCE_EXHAUSTED');
    expect((await sync()).status).toBe(200);
    home.switches.permissionDenied = true;
    expect(await sync()).toMatchObject({ status: 403, body: { error: { status: 'PERMISSION_DENIED' } } });
  });

  it('links agent users for the sandbox over HTTP', async () => {
    await start();
    const response = await fetch(`${home.url}/sandbox/agent-users/sandbox-user`, { method: 'POST' });
    expect(response.status).toBe(204);
    expect(home.isLinked('sandbox-user')).toBe(true);
  });
});
