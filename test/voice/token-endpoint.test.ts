import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApiServer } from '../../api/app';
import type { ApiServices } from '../../api/services';
import { createDatabasePool, type DatabasePool } from '../../db/pool';
import { deleteExpiredRecords } from '../../db/queries/housekeeping';
import { AuditLog } from '../../platform/audit';
import type { OAuthClientRow } from '../../platform/oauth-server/clients';
import { createPkcePair } from '../../platform/pkce';
import { hashBearerValue } from '../../platform/secrets';
import { authorizePath, signedInBrowser, WITHOUT_PKCE, type TestBrowser } from '../helpers/oauth-browser';
import { ADMIN_TOKEN, startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { freePort } from '../helpers/ports';
import {
  auditRows,
  basicAuth,
  grantOfRefreshToken,
  introspect,
  issueCode,
  postForm,
  waitForLockWaiters,
  withGrantLocked,
  type FormResponse,
  type TestClient,
  type Tokens,
} from '../oauth/token-helpers';

/**
 * Our token endpoint as Alexa and Google use it: they call from a few shared addresses for every
 * linked user, send parallel refreshes with one refresh token, retry answers they lost, and unlink
 * the user on any invalid_grant. Nothing of that may ever unlink a device; reuse after the grace
 * still revokes the family.
 */

const ALEXA_REDIRECT = 'https://pitangui.amazon.com/api/skill/link/M2AAAAAAAAAAAA';
const GOOGLE_REDIRECT = 'https://oauth-redirect.googleusercontent.com/r/pm-home-test';
const SCOPE = 'properties:read reservations:read';
const DAY_MS = 24 * 3600 * 1000;

/** A voice platform as a client of ours: how it authenticates at the token endpoint and where it is redirected. */
interface Platform extends TestClient {
  clientSecret: string;
  auth: 'basic' | 'body';
  redirectUri: string;
}

async function createPlatform(
  server: OAuthTestServer,
  options: { auth: 'basic' | 'body'; redirectUri: string; voicePlatform: OAuthClientRow['voicePlatform'] },
): Promise<Platform> {
  const { client, clientSecret } = await server.createClient({
    name: options.voicePlatform === 'google' ? 'Google Home' : 'Alexa skill',
    tokenEndpointAuthMethod: options.auth === 'basic' ? 'client_secret_basic' : 'client_secret_post',
    redirectUris: [options.redirectUri],
    scopes: ['properties:read', 'reservations:read'],
    kind: 'voice',
    voicePlatform: options.voicePlatform,
  });
  return { client, clientSecret: clientSecret!, auth: options.auth, redirectUri: options.redirectUri };
}

/** A token request as the platform sends it: HTTP Basic (Alexa) or credentials in the body (Google). */
function tokenRequest(target: OAuthTestServer, platform: Platform, parameters: Record<string, string>): Promise<FormResponse> {
  if (platform.auth === 'basic') return postForm(target, '/oauth/token', parameters, { authorization: basicAuth(platform.client.id, platform.clientSecret) });
  return postForm(target, '/oauth/token', { ...parameters, client_id: platform.client.id, client_secret: platform.clientSecret });
}

function refreshAs(target: OAuthTestServer, platform: Platform, refreshToken: string): Promise<FormResponse> {
  return tokenRequest(target, platform, { grant_type: 'refresh_token', refresh_token: refreshToken });
}

async function introspectAs(target: OAuthTestServer, platform: Platform, token: string): Promise<Record<string, unknown>> {
  const response = await (platform.auth === 'basic'
    ? postForm(target, '/oauth/introspect', { token }, { authorization: basicAuth(platform.client.id, platform.clientSecret) })
    : postForm(target, '/oauth/introspect', { token, client_id: platform.client.id, client_secret: platform.clientSecret }));
  expect(response.status, response.text).toBe(200);
  return response.body;
}

function tokensOf(response: FormResponse): Tokens {
  expect(response.status, response.text).toBe(200);
  return response.body as unknown as Tokens;
}

/** A link made without the consent pages (a code as the authorize endpoint issues it), for tests about what follows. */
async function link(target: OAuthTestServer, platform: Platform, userId: string): Promise<Tokens> {
  const issued = await issueCode(target, platform, userId, SCOPE.split(' '));
  return tokensOf(await tokenRequest(target, platform, { grant_type: 'authorization_code', code: issued.code, redirect_uri: issued.redirectUri, code_verifier: issued.verifier }));
}

/**
 * The platform's authorization request → our login and consent → its redirect URI with a code. A user
 * whose live grant already covers the scopes is sent back at once (a relink). Google sends no PKCE.
 */
async function consentTo(target: OAuthTestServer, platform: Platform, browser: TestBrowser, state: string) {
  const pkce = createPkcePair();
  const withoutPkce = platform.client.voicePlatform === 'google' ? { extra: WITHOUT_PKCE } : {};
  const { path } = authorizePath({ clientId: platform.client.id, redirectUri: platform.redirectUri, scope: SCOPE, state, pkce, ...withoutPkce });
  const authorize = await browser.get(path);
  const decision = authorize.status === 200 ? await browser.submit(await authorize.text(), {}, 'approve') : authorize;
  expect(decision.status).toBe(303);
  const location = decision.headers.get('location')!;
  expect(location.startsWith(`${platform.redirectUri}?`)).toBe(true);
  return { landed: new URL(location), verifier: pkce.verifier };
}

const refreshTokenRow = (target: OAuthTestServer, refreshToken: string) =>
  target.db.one(sql.type(
    z.object({ expiresAt: z.number(), rotatedAt: z.number().nullable(), revokedAt: z.number().nullable(), successorResponseEnc: z.string().nullable() }),
  )`
    SELECT expires_at AS "expiresAt", rotated_at AS "rotatedAt", revoked_at AS "revokedAt", successor_response_enc AS "successorResponseEnc"
    FROM oauth_refresh_tokens WHERE token_hash = ${hashBearerValue(refreshToken)}`);

const voiceDevicesOfGrant = (target: OAuthTestServer, grantId: string) =>
  target.db.any(sql.type(z.object({ id: z.string(), platform: z.string(), status: z.string() }))`
    SELECT id, platform, status FROM voice_devices WHERE grant_id = ${grantId}`);

/** The same api-server (database, keys, configuration) on another port, built with other services: a clock, a database pool. */
async function startSecondApiServer(server: OAuthTestServer, overrides: Partial<ApiServices>): Promise<{ target: OAuthTestServer; close(): Promise<void> }> {
  const port = await freePort();
  const app = await buildApiServer({ ...server.app.services, ...overrides });
  await app.listen({ host: '127.0.0.1', port });
  return { target: { ...server, ...overrides, app, url: `http://127.0.0.1:${port}` }, close: () => app.close() };
}

describe('an Alexa-like client (HTTP Basic, PKCE, state byte for byte)', () => {
  let server: OAuthTestServer;
  let alexa: Platform;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    alexa = await createPlatform(server, { auth: 'basic', redirectUri: ALEXA_REDIRECT, voicePlatform: 'alexa' });
  });
  afterAll(() => server?.close());

  it('links through our consent page, links one device, refreshes, and is never unlinked (sign-out included)', async () => {
    const { browser, user } = await signedInBrowser(server);
    const state = 'AmznState+/=~._-%20 x:Y';
    const { landed, verifier } = await consentTo(server, alexa, browser, state);
    expect(landed.searchParams.get('state')).toBe(state);
    expect(landed.searchParams.get('iss')).toBe(server.url);

    const first = tokensOf(
      await tokenRequest(server, alexa, { grant_type: 'authorization_code', code: landed.searchParams.get('code')!, redirect_uri: ALEXA_REDIRECT, code_verifier: verifier }),
    );
    expect(first).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: expect.any(Number), refresh_token: expect.any(String), scope: SCOPE });
    expect(first.expires_in).toBeGreaterThanOrEqual(360);

    const grantId = await grantOfRefreshToken(server, first.refresh_token);
    const devices = await voiceDevicesOfGrant(server, grantId);
    expect(devices).toEqual([{ id: expect.any(String), platform: 'alexa', status: 'linked' }]);
    const linkAudits = await auditRows(server, 'VoiceDeviceLink');
    expect(linkAudits).toEqual([
      expect.objectContaining({ outcome: 'success', client_id: alexa.client.id, user_id: user.id, details: { platform: 'alexa', deviceId: devices[0]!.id } }),
    ]);

    // The user signs out and every session of theirs ends: the device link does not depend on them.
    expect((await browser.post('/api/v1/auth/logout', {})).status).toBe(204);
    await server.db.query(sql.unsafe`UPDATE user_sessions SET expires_at = now() - interval '1 second', revoked_at = now() WHERE user_id = ${user.id}`);

    let current = first;
    for (let round = 0; round < 3; round += 1) {
      const next = tokensOf(await refreshAs(server, alexa, current.refresh_token));
      expect(next.refresh_token).not.toBe(current.refresh_token);
      // Alexa retries when an answer is slow: the retry gets the very same pair.
      expect(tokensOf(await refreshAs(server, alexa, current.refresh_token))).toMatchObject({ access_token: next.access_token, refresh_token: next.refresh_token });
      current = next;
    }
    expect(await introspectAs(server, alexa, current.refresh_token)).toMatchObject({ active: true });
    expect(await introspectAs(server, alexa, current.access_token)).toMatchObject({ active: true });
    expect(await voiceDevicesOfGrant(server, grantId)).toEqual(devices);
    expect(await auditRows(server, 'OAuthRefreshTokenReuse')).toEqual([]);
  });

  it('a relink of the same live grant finds its device: no second device, no second VoiceDeviceLink', async () => {
    const { browser } = await signedInBrowser(server);
    const exchange = async () => {
      const { landed, verifier } = await consentTo(server, alexa, browser, `relink-${Math.random()}`);
      return tokensOf(
        await tokenRequest(server, alexa, { grant_type: 'authorization_code', code: landed.searchParams.get('code')!, redirect_uri: ALEXA_REDIRECT, code_verifier: verifier }),
      );
    };
    const linksBefore = (await auditRows(server, 'VoiceDeviceLink')).length;
    const first = await exchange();
    const second = await exchange();
    const grantId = await grantOfRefreshToken(server, first.refresh_token);
    expect(await grantOfRefreshToken(server, second.refresh_token)).toBe(grantId);
    expect(await voiceDevicesOfGrant(server, grantId)).toHaveLength(1);
    expect(await auditRows(server, 'VoiceDeviceLink')).toHaveLength(linksBefore + 1);
  });
});

describe('a Google-like client (credentials in the body, parallel and retried refreshes)', () => {
  let server: OAuthTestServer;
  let google: Platform;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    google = await createPlatform(server, { auth: 'body', redirectUri: GOOGLE_REDIRECT, voicePlatform: 'google' });
  });
  afterAll(() => server?.close());

  it('parallel refreshes with one token all get the same pair, and so does a retry; after the successor is used, the old token revokes the family', async () => {
    const { browser } = await signedInBrowser(server);
    const { landed } = await consentTo(server, google, browser, 'google-state+/=');
    expect(landed.searchParams.get('state')).toBe('google-state+/=');
    const first = tokensOf(await tokenRequest(server, google, { grant_type: 'authorization_code', code: landed.searchParams.get('code')!, redirect_uri: GOOGLE_REDIRECT }));
    const grantId = await grantOfRefreshToken(server, first.refresh_token);
    expect(await voiceDevicesOfGrant(server, grantId)).toEqual([{ id: expect.any(String), platform: 'google', status: 'linked' }]);

    const parallel = await Promise.all(Array.from({ length: 5 }, () => refreshAs(server, google, first.refresh_token)));
    const pairs = parallel.map((response) => tokensOf(response));
    const successor = pairs[0]!;
    expect(successor.refresh_token).not.toBe(first.refresh_token);
    for (const pair of pairs) {
      expect(pair).toMatchObject({ token_type: 'Bearer', access_token: successor.access_token, refresh_token: successor.refresh_token, scope: SCOPE });
      expect(pair.expires_in).toBeGreaterThan(0);
      expect(pair.expires_in).toBeLessThanOrEqual(server.config.lifetimes.accessTokenSeconds);
    }
    // The answer was lost; Google retries with the old token.
    expect(tokensOf(await refreshAs(server, google, first.refresh_token))).toMatchObject({ access_token: successor.access_token, refresh_token: successor.refresh_token });

    const refreshes = (await auditRows(server, 'OAuthTokenRefresh')).filter((row) => row.client_id === google.client.id);
    expect(refreshes.filter((row) => (row.details as { repeated?: boolean }).repeated === true)).toHaveLength(5);
    expect(refreshes).toHaveLength(6);
    // The repeated pair waits encrypted, bound to the rotated row.
    const rotated = await refreshTokenRow(server, first.refresh_token);
    expect(rotated.successorResponseEnc).toMatch(/^v1\./);
    expect(rotated.successorResponseEnc).not.toContain(successor.refresh_token);

    // The successor is used: from now on the old token is a leak.
    const third = tokensOf(await refreshAs(server, google, successor.refresh_token));
    expect((await refreshTokenRow(server, first.refresh_token)).successorResponseEnc).toBeNull();
    const reuse = await refreshAs(server, google, first.refresh_token);
    expect(reuse.status).toBe(400);
    expect(reuse.body.error).toBe('invalid_grant');
    expect(await introspectAs(server, google, third.refresh_token)).toEqual({ active: false });
    expect(await introspectAs(server, google, third.access_token)).toEqual({ active: false });
    expect(await auditRows(server, 'OAuthRefreshTokenReuse')).toContainEqual(expect.objectContaining({ client_id: google.client.id, outcome: 'failure' }));
  });

  it("a disabled user's link waits (503 temporarily_unavailable, never invalid_grant, a retry in the grace too) and refreshes again once enabled", async () => {
    const { browser, user } = await signedInBrowser(server);
    const { landed } = await consentTo(server, google, browser, 'disabled-user');
    const first = tokensOf(await tokenRequest(server, google, { grant_type: 'authorization_code', code: landed.searchParams.get('code')!, redirect_uri: GOOGLE_REDIRECT }));
    const grantId = await grantOfRefreshToken(server, first.refresh_token);
    const successor = tokensOf(await refreshAs(server, google, first.refresh_token));
    const operator = (action: 'disable' | 'enable') =>
      fetch(`${server.url}/api/v1/admin/users/${user.id}/${action}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect((await operator('disable')).status).toBe(200);

    for (const refreshToken of [successor.refresh_token, first.refresh_token]) {
      const waiting = await refreshAs(server, google, refreshToken);
      expect(waiting.status, waiting.text).toBe(503);
      expect(waiting.body).toMatchObject({ error: 'temporarily_unavailable', error_description: expect.stringContaining('disabled') });
    }
    expect(await voiceDevicesOfGrant(server, grantId)).toEqual([{ id: expect.any(String), platform: 'google', status: 'linked' }]);
    expect((await auditRows(server, 'OAuthRefreshTokenReuse')).filter((row) => row.user_id === user.id)).toEqual([]);

    expect((await operator('enable')).status).toBe(200);
    expect(tokensOf(await refreshAs(server, google, successor.refresh_token)).refresh_token).not.toBe(successor.refresh_token);
  });

  it('the old token stops repeating once the grace has passed on the authorization server clock, and reuse then revokes the family', async () => {
    let offsetMs = 0;
    const clocked = await startSecondApiServer(server, { clock: () => new Date(Date.now() + offsetMs) });
    try {
      const user = await server.createUser(`grace-${Math.random()}@example.com`);
      const first = await link(clocked.target, google, user.id);
      const successor = tokensOf(await refreshAs(clocked.target, google, first.refresh_token));

      offsetMs = 60_000;
      const repeated = tokensOf(await refreshAs(clocked.target, google, first.refresh_token));
      expect(repeated).toMatchObject({ access_token: successor.access_token, refresh_token: successor.refresh_token });
      // expires_in is what is left of that access token.
      expect(repeated.expires_in).toBeLessThanOrEqual(successor.expires_in - 60);
      expect(repeated.expires_in).toBeGreaterThan(successor.expires_in - 120);

      offsetMs = (server.config.voice.refreshGraceSeconds + 1) * 1000;
      const late = await refreshAs(clocked.target, google, first.refresh_token);
      expect(late.status).toBe(400);
      expect(late.body.error).toBe('invalid_grant');
      expect(await introspectAs(clocked.target, google, successor.refresh_token)).toEqual({ active: false });
    } finally {
      await clocked.close();
    }
  });

  it('housekeeping wipes an envelope whose grace has passed and keeps one still in its grace', async () => {
    const linkFresh = async () => {
      const first = await link(server, google, (await server.createUser(`housekeeping-${Math.random()}@example.com`)).id);
      tokensOf(await refreshAs(server, google, first.refresh_token));
      return first.refresh_token;
    };
    const [expired, inGrace] = [await linkFresh(), await linkFresh()];
    await server.db.query(sql.unsafe`
      UPDATE oauth_refresh_tokens SET successor_response_expires_at = now() - interval '1 second' WHERE token_hash = ${hashBearerValue(expired)}`);
    await deleteExpiredRecords(server.db);
    expect((await refreshTokenRow(server, expired)).successorResponseEnc).toBeNull();
    expect((await refreshTokenRow(server, inGrace)).successorResponseEnc).toMatch(/^v1\./);
  });

  it("other clients keep strict rotation: a rotated token used again revokes the family at once", async () => {
    const app = await server.createClient({ name: 'Third-party app' });
    const user = await server.createUser(`strict-${Math.random()}@example.com`);
    const first = await link(server, { ...app, clientSecret: app.clientSecret!, auth: 'basic', redirectUri: app.client.redirectUris[0]! }, user.id);
    const second = tokensOf(await postForm(server, '/oauth/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token }, { authorization: basicAuth(app.client.id, app.clientSecret!) }));
    const retry = await postForm(server, '/oauth/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token }, { authorization: basicAuth(app.client.id, app.clientSecret!) });
    expect(retry.body.error).toBe('invalid_grant');
    expect(await introspect(server, app, second.refresh_token)).toEqual({ active: false });
  });
});

describe('device refresh tokens slide for a year with use', () => {
  let server: OAuthTestServer;
  let alexa: Platform;
  let offsetMs = 0;
  let clocked: { target: OAuthTestServer; close(): Promise<void> };

  beforeAll(async () => {
    server = await startOAuthTestServer();
    // A voice client of no platform yet: the lifetime is the client kind's, and no device workflow is involved.
    alexa = await createPlatform(server, { auth: 'basic', redirectUri: ALEXA_REDIRECT, voicePlatform: null });
    clocked = await startSecondApiServer(server, { clock: () => new Date(Date.now() + offsetMs) });
  });
  afterAll(async () => {
    await clocked?.close();
    await server?.close();
  });

  it('each rotation lives DEVICE_REFRESH_TOKEN_TTL from then; a token unused for that long has expired', async () => {
    const lifetimeMs = server.config.lifetimes.deviceRefreshTokenSeconds * 1000;
    const used = await link(clocked.target, alexa, (await server.createUser(`slide-${Math.random()}@example.com`)).id);
    const unused = await link(clocked.target, alexa, (await server.createUser(`unused-${Math.random()}@example.com`)).id);
    const expectLifetimeFromNow = async (refreshToken: string) => {
      const { expiresAt } = await refreshTokenRow(server, refreshToken);
      const now = Date.now() + offsetMs;
      expect(expiresAt).toBeGreaterThan(now + lifetimeMs - 60_000);
      expect(expiresAt).toBeLessThanOrEqual(now + lifetimeMs);
    };
    await expectLifetimeFromNow(used.refresh_token);

    offsetMs = 300 * DAY_MS;
    const later = tokensOf(await refreshAs(clocked.target, alexa, used.refresh_token));
    await expectLifetimeFromNow(later.refresh_token);

    offsetMs = 600 * DAY_MS;
    const muchLater = tokensOf(await refreshAs(clocked.target, alexa, later.refresh_token));
    await expectLifetimeFromNow(muchLater.refresh_token);
    expect(await introspectAs(clocked.target, alexa, muchLater.access_token)).toMatchObject({ active: true });

    const expired = await refreshAs(clocked.target, alexa, unused.refresh_token);
    expect(expired.status).toBe(400);
    expect(expired.body.error).toBe('invalid_grant');
  });
});

describe('limits that never lock out a voice client', () => {
  const PER_MINUTE = 3;
  let server: OAuthTestServer;
  let alexa: Platform;

  beforeAll(async () => {
    server = await startOAuthTestServer({ OAUTH_TOKEN_REQUESTS_PER_MINUTE: String(PER_MINUTE) });
    alexa = await createPlatform(server, { auth: 'basic', redirectUri: ALEXA_REDIRECT, voicePlatform: null });
  });
  afterAll(() => server?.close());

  it('counts token requests per refresh token, not per address: many devices behind one address all refresh', async () => {
    const devices = await Promise.all(
      Array.from({ length: PER_MINUTE + 1 }, async (_, index) => link(server, alexa, (await server.createUser(`device-${index}-${Math.random()}@example.com`)).id)),
    );
    const latest = [];
    for (const device of devices) {
      const next = tokensOf(await refreshAs(server, alexa, device.refresh_token));
      latest.push(tokensOf(await refreshAs(server, alexa, next.refresh_token)));
    }
    // The limit is still there, per token: one refresh token presented too often (a refresh, then retries) is throttled.
    const answers = [];
    for (let attempt = 0; attempt <= PER_MINUTE; attempt += 1) answers.push((await refreshAs(server, alexa, latest[0]!.refresh_token)).status);
    expect(answers).toEqual([200, 200, 200, 429]);
  });

  it("another caller's failed authentications from the same address do not lock the voice client out", async () => {
    const linked = await link(server, alexa, (await server.createUser(`junk-${Math.random()}@example.com`)).id);
    // The voice client calls from this address before the junk starts, as Alexa does all the time.
    const device = tokensOf(await refreshAs(server, alexa, linked.refresh_token));
    const limiter = server.app.authorizationServer.failedClientAuthentications;
    const junk = () => postForm(server, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basicAuth(`c_junk${Math.random()}`, 'guess') });
    for (let attempt = 0; attempt < limiter.maxFailures; attempt += 1) expect((await junk()).status).toBe(401);
    expect((await junk()).status).toBe(429);

    tokensOf(await refreshAs(server, alexa, device.refresh_token));
    // A wrong secret for the voice client itself is still refused while the address is throttled, and not audited.
    const wrongSecret = await postForm(server, '/oauth/token', { grant_type: 'refresh_token', refresh_token: device.refresh_token }, { authorization: basicAuth(alexa.client.id, 'wrong') });
    expect(wrongSecret.status).toBe(429);
    expect(await auditRows(server, 'OAuthClientAuthFailed')).toHaveLength(limiter.maxFailures);
  });
});

describe('a database outage during a refresh', () => {
  let server: OAuthTestServer;
  let alexa: Platform;
  let proxy: DatabaseProxy;
  let proxiedDb: DatabasePool;
  let proxied: { target: OAuthTestServer; close(): Promise<void> };

  beforeAll(async () => {
    server = await startOAuthTestServer();
    alexa = await createPlatform(server, { auth: 'basic', redirectUri: ALEXA_REDIRECT, voicePlatform: null });
    proxy = await startDatabaseProxy(new URL(server.config.databaseUrl!));
    // Two connections: a pool that lost a slot to each broken connection would be dead after the second cut.
    proxiedDb = await createDatabasePool(proxy.url, { maximumPoolSize: 2, connectionTimeoutMs: server.config.databaseConnectionTimeoutMs });
    proxied = await startSecondApiServer(server, { db: proxiedDb, audit: new AuditLog(proxiedDb) });
  });
  afterAll(async () => {
    await proxied?.close();
    await proxiedDb?.end();
    await proxy?.close();
    await server?.close();
  });

  const familySize = (refreshToken: string) =>
    server.db.oneFirst(sql.type(z.object({ count: z.number() }))`
      SELECT count(*)::int AS count FROM oauth_refresh_tokens
      WHERE family_id = (SELECT family_id FROM oauth_refresh_tokens WHERE token_hash = ${hashBearerValue(refreshToken)})`);

  const expectTryAgain = (response: FormResponse) => {
    expect(response.status, response.text).toBe(503);
    expect(response.body.error).toBe('temporarily_unavailable');
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
  };

  it('answers 503 temporarily_unavailable, never invalid_grant, while the database is unreachable; then the same token refreshes', async () => {
    const tokens = await link(proxied.target, alexa, (await server.createUser(`outage-${Math.random()}@example.com`)).id);
    await proxy.cut();
    expectTryAgain(await refreshAs(proxied.target, alexa, tokens.refresh_token));
    expectTryAgain(await refreshAs(proxied.target, alexa, tokens.refresh_token));
    expectTryAgain(await postForm(proxied.target, '/oauth/introspect', { token: tokens.refresh_token }, { authorization: basicAuth(alexa.client.id, alexa.clientSecret) }));
    expectTryAgain(await postForm(proxied.target, '/oauth/revoke', { token: tokens.refresh_token }, { authorization: basicAuth(alexa.client.id, alexa.clientSecret) }));
    expect(await refreshTokenRow(server, tokens.refresh_token)).toMatchObject({ rotatedAt: null, revokedAt: null });

    await proxy.restore();
    const next = tokensOf(await refreshAs(proxied.target, alexa, tokens.refresh_token));
    expect(await familySize(next.refresh_token)).toBe(2);
  });

  it('a refresh kept waiting for the grant lock answers 503 while the lock is still held, never invalid_grant; then the token refreshes', async () => {
    // The api-server's pool bounds every statement and every lock wait.
    const setting = (name: string) => server.db.oneFirst(sql.type(z.object({ setting: z.string() }))`SELECT setting FROM pg_settings WHERE name = ${name}`);
    expect(await setting('lock_timeout')).toBe(String(server.config.databaseLockTimeoutMs));
    expect(await setting('statement_timeout')).toBe(String(server.config.databaseStatementTimeoutMs));
    const tokens = await link(server, alexa, (await server.createUser(`locked-${Math.random()}@example.com`)).id);
    await withGrantLocked(server, await grantOfRefreshToken(server, tokens.refresh_token), async (holder) => {
      const pending = refreshAs(server, alexa, tokens.refresh_token);
      await waitForLockWaiters(holder, 1);
      // The holder commits only after this answer: without a lock timeout the refresh would wait for it.
      expectTryAgain(await pending);
    });
    expect(await refreshTokenRow(server, tokens.refresh_token)).toMatchObject({ rotatedAt: null, revokedAt: null });
    tokensOf(await refreshAs(server, alexa, tokens.refresh_token));
  });

  it('a throttled address is answered 429 before the database, but the voice client that authenticated from it is still checked', async () => {
    // An api-server of its own: a fresh failed-authentication limiter, on the pool behind the proxy.
    const throttled = await startSecondApiServer(server, { db: proxiedDb, audit: new AuditLog(proxiedDb) });
    try {
      const tokens = await link(throttled.target, alexa, (await server.createUser(`throttled-${Math.random()}@example.com`)).id);
      const junk = () =>
        postForm(throttled.target, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basicAuth(`c_junk${Math.random()}`, 'guess') });
      const { maxFailures } = throttled.target.app.authorizationServer.failedClientAuthentications;
      for (let attempt = 0; attempt < maxFailures; attempt += 1) expect((await junk()).status).toBe(401);

      await proxy.cut();
      // No database: junk still gets its 429, so it was answered without one; the voice client's refresh needs it.
      const refused = await junk();
      expect(refused.status, refused.text).toBe(429);
      expectTryAgain(await refreshAs(throttled.target, alexa, tokens.refresh_token));
      await proxy.restore();
      tokensOf(await refreshAs(throttled.target, alexa, tokens.refresh_token));
      expect((await junk()).status).toBe(429);
    } finally {
      await throttled.close();
    }
  });

  it('connections cut in the middle of a refresh answer 503 and change nothing; the pool recovers each time', async () => {
    for (let cut = 0; cut < 2; cut += 1) {
      const tokens = await link(proxied.target, alexa, (await server.createUser(`cut-${cut}-${Math.random()}@example.com`)).id);
      const grantId = await grantOfRefreshToken(server, tokens.refresh_token);
      await withGrantLocked(server, grantId, async (holder) => {
        const pending = refreshAs(proxied.target, alexa, tokens.refresh_token);
        // The refresh's transaction has begun and waits for the grant's lock when the connection breaks.
        await waitForLockWaiters(holder, 1);
        await proxy.cut();
        expectTryAgain(await pending);
      });
      await proxy.restore();
      expect(proxiedDb.state()).toMatchObject({ pendingDestroyConnections: 0 });
      expect(await refreshTokenRow(server, tokens.refresh_token)).toMatchObject({ rotatedAt: null, revokedAt: null });
      expect(await familySize(tokens.refresh_token)).toBe(1);
      tokensOf(await refreshAs(proxied.target, alexa, tokens.refresh_token));
    }
  });
});

interface DatabaseProxy {
  url: string;
  /** Breaks every connection through the proxy and refuses new ones. */
  cut(): Promise<void>;
  /** Accepts connections again, on the same port. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

/** A TCP proxy on 127.0.0.1 in front of Postgres, so a test can take the database away from one api-server and give it back. */
async function startDatabaseProxy(target: URL): Promise<DatabaseProxy> {
  const sockets = new Set<Socket>();
  let listening: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const server = createServer((client) => {
        const upstream = connect(Number(target.port || 5432), target.hostname);
        for (const socket of [client, upstream]) {
          sockets.add(socket);
          socket.on('error', () => socket.destroy());
          socket.on('close', () => {
            sockets.delete(socket);
            client.destroy();
            upstream.destroy();
          });
        }
        client.pipe(upstream).pipe(client);
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = (server.address() as AddressInfo).port;
        listening = server;
        resolve();
      });
    });
  const cut = async () => {
    const server = listening;
    listening = undefined;
    const closed = server ? new Promise((resolve) => server.close(resolve)) : Promise.resolve();
    for (const socket of sockets) socket.destroy();
    await closed;
  };
  await listen();
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return { url: url.toString(), cut, restore: listen, close: cut };
}
