import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findClient } from '../../db/queries/oauth-clients';
import { issueAuthorizationCode } from '../../platform/oauth-server/authorization-codes';
import { authenticateClient, type OAuthClientRow } from '../../platform/oauth-server/clients';
import { OAuthError } from '../../platform/oauth-server/errors';
import { createPkcePair } from '../../platform/pkce';
import { hashBearerValue } from '../../platform/secrets';
import { ADMIN_TOKEN, INITIAL_ACCESS_TOKEN, startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';

/**
 * Client registration: the admin API (create, list, read, replace redirect URIs, rotate the secret,
 * revoke) and RFC 7591 dynamic registration, over real HTTP against real Postgres.
 */

const ADMIN_PATH = '/api/v1/admin/oauth/clients';

interface JsonResponse {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

async function send(server: OAuthTestServer, method: string, path: string, options: { body?: unknown; token?: string | null } = {}): Promise<JsonResponse> {
  const headers: Record<string, string> = {};
  if (options.token !== null) headers.authorization = `Bearer ${options.token ?? ADMIN_TOKEN}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

const register = (server: OAuthTestServer, body: unknown, token: string | null = INITIAL_ACCESS_TOKEN) =>
  send(server, 'POST', '/oauth/register', { body, token });

const clientInput = {
  name: 'Property dashboard',
  redirect_uris: ['https://dashboard.example/callback'],
  grant_types: ['authorization_code', 'refresh_token'],
  scopes: ['properties:read', 'offline_access'],
  token_endpoint_auth_method: 'client_secret_basic',
  kind: 'third_party',
};

const countClients = (server: OAuthTestServer) => server.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM oauth_clients`);

const storedSecretHash = (server: OAuthTestServer, clientId: string) =>
  server.db.oneFirst(sql.type(z.object({ secretHash: z.string().nullable() }))`SELECT secret_hash AS "secretHash" FROM oauth_clients WHERE id = ${clientId}`);

const auditRows = (server: OAuthTestServer, action: string, clientId?: string) =>
  server.db.any(sql.type(z.object({ actorType: z.string(), actorId: z.string().nullable(), clientId: z.string().nullable(), ipAddress: z.string().nullable(), details: z.record(z.unknown()) }))`
    SELECT actor_type AS "actorType", actor_id AS "actorId", client_id AS "clientId", host(ip_address) AS "ipAddress", details
    FROM audit_log WHERE action = ${action} ${clientId === undefined ? sql.fragment`` : sql.fragment`AND client_id = ${clientId}`}
    ORDER BY id`);

async function authenticatesWithBasic(server: OAuthTestServer, clientId: string, secret: string): Promise<boolean> {
  const authorization = `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;
  try {
    await authenticateClient(server.db, { authorization, bodyClientId: undefined, bodyClientSecret: undefined });
    return true;
  } catch (error) {
    if (error instanceof OAuthError && error.code === 'invalid_client') return false;
    throw error;
  }
}

describe('client registration', () => {
  let server: OAuthTestServer;
  /** Every secret the server handed out, to prove none reached a table or an audit row. */
  const issuedSecrets: string[] = [];

  beforeAll(async () => {
    server = await startOAuthTestServer({ LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' });
  });
  afterAll(() => server?.close());

  async function createViaAdmin(overrides: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const response = await send(server, 'POST', ADMIN_PATH, { body: { ...clientInput, ...overrides } });
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    if (typeof response.body.client_secret === 'string') issuedSecrets.push(response.body.client_secret);
    return response.body;
  }

  describe('admin API', () => {
    it('creates a confidential client: the secret is answered once and stored only as its hash', async () => {
      const created = await createViaAdmin();
      const clientId = created.client_id as string;
      const secret = created.client_secret as string;
      expect(clientId).toMatch(/^c_/);
      expect(secret.length).toBeGreaterThanOrEqual(43);
      expect(created).toMatchObject({
        name: 'Property dashboard',
        client_type: 'confidential',
        token_endpoint_auth_method: 'client_secret_basic',
        redirect_uris: ['https://dashboard.example/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        scopes: ['properties:read', 'offline_access'],
        kind: 'third_party',
        registered_by: 'admin',
        revoked_at: null,
      });

      const stored = await storedSecretHash(server, clientId);
      expect(stored).toBe(hashBearerValue(secret));
      expect(stored).not.toContain(secret);
      expect(await authenticatesWithBasic(server, clientId, secret)).toBe(true);

      const read = await send(server, 'GET', `${ADMIN_PATH}/${clientId}`);
      expect(read.status).toBe(200);
      expect(read.body).toMatchObject({ client_id: clientId, name: 'Property dashboard' });
      expect(read.body).not.toHaveProperty('client_secret');
      expect(JSON.stringify(read.body)).not.toContain(secret);

      const list = await send(server, 'GET', ADMIN_PATH);
      expect(list.status).toBe(200);
      const clients = list.body.clients as Record<string, unknown>[];
      expect(clients.map((client) => client.client_id)).toContain(clientId);
      expect(JSON.stringify(list.body)).not.toContain(secret);
      expect(list.headers.get('cache-control')).toBe('no-store');

      const [audit] = await auditRows(server, 'OAuthClientCreate', clientId);
      expect(audit).toMatchObject({ actorType: 'operator', clientId, ipAddress: '127.0.0.1' });
      expect(audit!.details).toMatchObject({ registered_by: 'admin', kind: 'third_party' });
    });

    it('answers 404 for an unknown client', async () => {
      const response = await send(server, 'GET', `${ADMIN_PATH}/c_nope`);
      expect(response.status).toBe(404);
      expect(response.body).toMatchObject({ error: 'not_found' });
    });

    it('refuses callers without the admin token (401 with a Bearer challenge)', async () => {
      const missing = await send(server, 'GET', ADMIN_PATH, { token: null });
      expect(missing.status).toBe(401);
      expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect(missing.body).toMatchObject({ error: 'unauthenticated' });
      expect(missing.body.message).toEqual(expect.any(String));

      const before = await countClients(server);
      const wrong = await send(server, 'POST', ADMIN_PATH, { body: clientInput, token: `${ADMIN_TOKEN}x` });
      expect(wrong.status).toBe(401);
      expect(wrong.headers.get('www-authenticate')).toMatch(/^Bearer .*error="invalid_token"/);
      expect(wrong.body).toMatchObject({ error: 'invalid_token' });
      const basic = await fetch(`${server.url}${ADMIN_PATH}`, { headers: { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` } });
      expect(basic.status).toBe(401);
      expect(await countClients(server)).toBe(before);
    });

    it.each([
      ['an http redirect URI that is not loopback', { redirect_uris: ['http://dashboard.example/callback'] }, 'invalid_redirect_uri'],
      ['a redirect URI with a fragment', { redirect_uris: ['https://dashboard.example/callback#x'] }, 'invalid_redirect_uri'],
      ['a relative redirect URI', { redirect_uris: ['/callback'] }, 'invalid_redirect_uri'],
      ['a redirect URI with a NUL byte', { redirect_uris: ['https://dashboard.example/cb\u0000'] }, 'invalid_redirect_uri'],
      ['authorization_code without a redirect URI', { redirect_uris: [] }, 'invalid_redirect_uri'],
      ['an unknown grant type', { grant_types: ['authorization_code', 'password'] }, 'invalid_client_metadata'],
      ['the implicit grant', { grant_types: ['implicit'] }, 'invalid_client_metadata'],
      ['refresh_token without authorization_code', { grant_types: ['refresh_token'], redirect_uris: [] }, 'invalid_client_metadata'],
      ['an unknown scope', { scopes: ['properties:read', 'admin:everything'] }, 'invalid_client_metadata'],
      [
        'client_credentials on a public client',
        { token_endpoint_auth_method: 'none', grant_types: ['client_credentials'], redirect_uris: [], kind: 'service' },
        'invalid_client_metadata',
      ],
      ['a public voice client', { token_endpoint_auth_method: 'none', kind: 'voice', voice_platform: 'alexa' }, 'invalid_client_metadata'],
      ['a voice client without its platform', { kind: 'voice' }, 'invalid_client_metadata'],
      ['a blank name', { name: '   ' }, 'invalid_client_metadata'],
      ['an unknown auth method', { token_endpoint_auth_method: 'private_key_jwt' }, 'invalid_request'],
      ['an unknown kind', { kind: 'robot' }, 'invalid_request'],
      ['a string where a list belongs', { scopes: { read: true } }, 'invalid_request'],
    ])('refuses %s with 400 and creates nothing', async (_case, overrides, error) => {
      const before = await countClients(server);
      const response = await send(server, 'POST', ADMIN_PATH, { body: { ...clientInput, ...overrides } });
      expect(response.status).toBe(400);
      expect(response.body).toMatchObject({ error, message: expect.any(String) });
      expect(await countClients(server)).toBe(before);
    });

    it('refuses a body that is not JSON with 400', async () => {
      const response = await fetch(`${server.url}${ADMIN_PATH}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: '{"name":',
      });
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ error: expect.any(String), message: expect.any(String) });
    });

    it('creates a public client (PKCE only) without a secret', async () => {
      const created = await createViaAdmin({ token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], scopes: ['properties:read'] });
      expect(created).not.toHaveProperty('client_secret');
      expect(created.client_type).toBe('public');
      expect(await storedSecretHash(server, created.client_id as string)).toBeNull();

      const rotate = await send(server, 'POST', `${ADMIN_PATH}/${created.client_id as string}/secret`);
      expect(rotate.status).toBe(409);
      expect(rotate.body).toMatchObject({ error: 'public_client' });
    });

    it('creates a confidential service client for client_credentials', async () => {
      const created = await createViaAdmin({ kind: 'service', grant_types: ['client_credentials'], redirect_uris: [], scopes: ['reservations:read'] });
      expect(created).toMatchObject({ kind: 'service', grant_types: ['client_credentials'], redirect_uris: [], client_type: 'confidential' });
      expect(created.client_secret).toEqual(expect.any(String));
    });

    it('registers an Alexa account-linking client (HTTP_BASIC) and a Google Home one (client_secret_post)', async () => {
      const alexa = await createViaAdmin({
        name: 'Amazon Alexa',
        kind: 'voice',
        voice_platform: 'alexa',
        token_endpoint_auth_method: 'client_secret_basic',
        redirect_uris: [
          'https://pitangui.amazon.com/api/skill/link/M2ABCDEF',
          'https://layla.amazon.com/api/skill/link/M2ABCDEF',
          'https://alexa.amazon.co.jp/api/skill/link/M2ABCDEF',
        ],
        scopes: ['devices:control', 'offline_access'],
      });
      expect(alexa).toMatchObject({ kind: 'voice', voice_platform: 'alexa', token_endpoint_auth_method: 'client_secret_basic', client_type: 'confidential' });
      expect(await authenticatesWithBasic(server, alexa.client_id as string, alexa.client_secret as string)).toBe(true);

      const google = await createViaAdmin({
        name: 'Google Home',
        kind: 'voice',
        voice_platform: 'google',
        token_endpoint_auth_method: 'client_secret_post',
        redirect_uris: ['https://oauth-redirect.googleusercontent.com/r/my-project'],
        scopes: ['devices:control', 'offline_access'],
      });
      expect(google).toMatchObject({ kind: 'voice', voice_platform: 'google', token_endpoint_auth_method: 'client_secret_post' });
      const authenticated = await authenticateClient(server.db, {
        authorization: undefined,
        bodyClientId: google.client_id as string,
        bodyClientSecret: google.client_secret as string,
      });
      expect(authenticated.id).toBe(google.client_id);
    });

    it('replaces the redirect URIs, validating each, and audits the change', async () => {
      const created = await createViaAdmin();
      const clientId = created.client_id as string;
      const path = `${ADMIN_PATH}/${clientId}/redirect-uris`;

      const updated = await send(server, 'PUT', path, { body: { redirect_uris: ['https://dashboard.example/v2/callback', 'http://127.0.0.1/callback'] } });
      expect(updated.status).toBe(200);
      expect(updated.body.redirect_uris).toEqual(['https://dashboard.example/v2/callback', 'http://127.0.0.1/callback']);

      for (const redirectUris of [['http://dashboard.example/callback'], ['https://dashboard.example/cb#fragment'], ['not a uri'], []]) {
        const refused = await send(server, 'PUT', path, { body: { redirect_uris: redirectUris } });
        expect(refused.status, JSON.stringify(redirectUris)).toBe(400);
        expect(refused.body).toMatchObject({ error: 'invalid_redirect_uri' });
      }
      const missing = await send(server, 'PUT', path, { body: {} });
      expect(missing.status).toBe(400);
      const unknown = await send(server, 'PUT', `${ADMIN_PATH}/c_nope/redirect-uris`, { body: { redirect_uris: ['https://a.example/cb'] } });
      expect(unknown.status).toBe(404);

      const read = await send(server, 'GET', `${ADMIN_PATH}/${clientId}`);
      expect(read.body.redirect_uris).toEqual(['https://dashboard.example/v2/callback', 'http://127.0.0.1/callback']);
      const audits = await auditRows(server, 'OAuthClientUpdate', clientId);
      expect(audits).toHaveLength(1);
      expect(audits[0]).toMatchObject({ actorType: 'operator', details: { redirect_uris: ['https://dashboard.example/v2/callback', 'http://127.0.0.1/callback'] } });
    });

    it('rotates the secret: the new one is answered once, the old one stops working at once', async () => {
      const created = await createViaAdmin();
      const clientId = created.client_id as string;
      const oldSecret = created.client_secret as string;

      const rotated = await send(server, 'POST', `${ADMIN_PATH}/${clientId}/secret`);
      expect(rotated.status).toBe(200);
      const newSecret = rotated.body.client_secret as string;
      issuedSecrets.push(newSecret);
      expect(newSecret).not.toBe(oldSecret);
      expect(rotated.body.secret_rotated_at).toEqual(expect.any(String));

      expect(await authenticatesWithBasic(server, clientId, oldSecret)).toBe(false);
      expect(await authenticatesWithBasic(server, clientId, newSecret)).toBe(true);
      expect(await storedSecretHash(server, clientId)).toBe(hashBearerValue(newSecret));

      const read = await send(server, 'GET', `${ADMIN_PATH}/${clientId}`);
      expect(read.body).not.toHaveProperty('client_secret');
      expect(await auditRows(server, 'OAuthClientSecretRotate', clientId)).toEqual([expect.objectContaining({ actorType: 'operator' })]);

      expect((await send(server, 'POST', `${ADMIN_PATH}/c_nope/secret`)).status).toBe(404);
    });

    it('revokes a client: its grants, refresh tokens and access tokens stop working at once', async () => {
      const created = await createViaAdmin();
      const clientId = created.client_id as string;
      const secret = created.client_secret as string;
      const user = await server.createUser('revoked-client@example.com');
      const client = await findClientRow(clientId);

      // Tokens from a redeemed authorization code, as the token endpoint issues them.
      const pkce = createPkcePair();
      const { code } = await issueAuthorizationCode(
        server.db,
        { clientId, userId: user.id, redirectUri: clientInput.redirect_uris[0]!, scopes: ['properties:read', 'offline_access'], codeChallenge: pkce.challenge },
        new Date(Date.now() + 60_000),
      );
      const { tokens } = await server.app.authorizationServer.tokenEndpoint.authorizationCode(
        { client, origin: { ip: '127.0.0.1' } },
        { code, redirectUri: clientInput.redirect_uris[0]!, codeVerifier: pkce.verifier },
      );
      expect(tokens.refresh_token).toEqual(expect.any(String));
      // A second code, issued but not yet redeemed.
      const pending = await issueAuthorizationCode(
        server.db,
        { clientId, userId: user.id, redirectUri: clientInput.redirect_uris[0]!, scopes: ['properties:read'], codeChallenge: pkce.challenge },
        new Date(Date.now() + 60_000),
      );
      expect(await server.app.authorizationServer.tokens.verifyAccessToken(tokens.access_token)).not.toBeNull();

      const revoked = await send(server, 'DELETE', `${ADMIN_PATH}/${clientId}`);
      expect(revoked.status).toBe(200);
      expect(revoked.body.revoked_at).toEqual(expect.any(String));

      const state = await server.db.one(sql.type(
        z.object({ clientRevoked: z.boolean(), liveGrants: z.number(), liveRefresh: z.number(), liveAccess: z.number(), liveCodes: z.number() }),
      )`
        SELECT (SELECT revoked_at IS NOT NULL FROM oauth_clients WHERE id = ${clientId}) AS "clientRevoked",
               (SELECT count(*)::int FROM oauth_grants WHERE client_id = ${clientId} AND revoked_at IS NULL) AS "liveGrants",
               (SELECT count(*)::int FROM oauth_refresh_tokens WHERE client_id = ${clientId} AND revoked_at IS NULL) AS "liveRefresh",
               (SELECT count(*)::int FROM oauth_access_tokens WHERE client_id = ${clientId} AND revoked_at IS NULL) AS "liveAccess",
               (SELECT count(*)::int FROM oauth_authorization_codes WHERE client_id = ${clientId} AND consumed_at IS NULL AND expires_at > now()) AS "liveCodes"`);
      expect(state).toEqual({ clientRevoked: true, liveGrants: 0, liveRefresh: 0, liveAccess: 0, liveCodes: 0 });

      // The client cannot authenticate, so it can neither refresh nor redeem the pending code.
      expect(await authenticatesWithBasic(server, clientId, secret)).toBe(false);
      // Even a caller that skipped client authentication gets nothing from the refresh token.
      await expect(
        server.app.authorizationServer.tokenEndpoint.refreshToken({ client, origin: {} }, { refreshToken: tokens.refresh_token! }),
      ).rejects.toMatchObject({ code: 'invalid_grant' });
      await expect(
        server.app.authorizationServer.tokenEndpoint.authorizationCode({ client, origin: {} }, { code: pending.code, redirectUri: clientInput.redirect_uris[0]!, codeVerifier: pkce.verifier }),
      ).rejects.toMatchObject({ code: 'invalid_grant' });

      // Introspection (by another, live client) sees the access and refresh tokens as inactive.
      const introspector = await createViaAdmin({ name: 'Resource server' });
      for (const token of [tokens.access_token, tokens.refresh_token!]) {
        const response = await fetch(`${server.url}/oauth/introspect`, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            authorization: `Basic ${Buffer.from(`${introspector.client_id as string}:${introspector.client_secret as string}`).toString('base64')}`,
          },
          body: new URLSearchParams({ token }).toString(),
        });
        expect(response.status).toBe(200);
        expect(await response.json()).toEqual({ active: false });
      }

      // The token endpoint refuses the revoked client.
      const refresh = await fetch(`${server.url}/oauth/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`,
        },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token! }).toString(),
      });
      expect(refresh.status).toBe(401);
      expect(await refresh.json()).toMatchObject({ error: 'invalid_client' });

      // Revoked clients cannot be changed; revoking again is idempotent and audited once.
      const update = await send(server, 'PUT', `${ADMIN_PATH}/${clientId}/redirect-uris`, { body: { redirect_uris: ['https://dashboard.example/new'] } });
      expect(update.status).toBe(409);
      expect(update.body).toMatchObject({ error: 'client_revoked' });
      expect((await send(server, 'POST', `${ADMIN_PATH}/${clientId}/secret`)).status).toBe(409);
      const again = await send(server, 'DELETE', `${ADMIN_PATH}/${clientId}`);
      expect(again.status).toBe(200);
      expect(await auditRows(server, 'OAuthClientRevoke', clientId)).toEqual([expect.objectContaining({ actorType: 'operator', clientId })]);
      expect((await send(server, 'DELETE', `${ADMIN_PATH}/c_nope`)).status).toBe(404);
    });
  });

  async function findClientRow(clientId: string): Promise<OAuthClientRow> {
    return (await findClient(server.db, clientId))!;
  }

  describe('RFC 7591 dynamic registration', () => {
    // Registration is rate-limited to 10 requests a minute per address: this block stays below that.
    it('registers a confidential client with the initial access token', async () => {
      const response = await register(server, {
        client_name: 'Holiday planner',
        redirect_uris: ['https://planner.example/oauth/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_post',
        scope: 'properties:read calendar:read offline_access',
        logo_uri: 'https://planner.example/logo.png',
      });
      expect(response.status, JSON.stringify(response.body)).toBe(201);
      expect(response.headers.get('cache-control')).toBe('no-store');
      const body = response.body;
      issuedSecrets.push(body.client_secret as string);
      expect(body).toMatchObject({
        client_id: expect.stringMatching(/^c_/),
        client_secret: expect.any(String),
        client_secret_expires_at: 0,
        client_name: 'Holiday planner',
        redirect_uris: ['https://planner.example/oauth/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_post',
        scope: 'properties:read calendar:read offline_access',
      });
      expect(Math.abs((body.client_id_issued_at as number) - Date.now() / 1000)).toBeLessThan(60);

      const row = await findClientRow(body.client_id as string);
      expect(row).toMatchObject({ kind: 'third_party', registeredBy: 'dynamic', clientType: 'confidential' });
      expect(await storedSecretHash(server, row.id)).toBe(hashBearerValue(body.client_secret as string));
      const authenticated = await authenticateClient(server.db, { authorization: undefined, bodyClientId: row.id, bodyClientSecret: body.client_secret as string });
      expect(authenticated.id).toBe(row.id);

      const [audit] = await auditRows(server, 'OAuthClientCreate', row.id);
      expect(audit).toMatchObject({ actorType: 'client', actorId: row.id, ipAddress: '127.0.0.1', details: { registered_by: 'dynamic' } });
    });

    it('registers a public client (token_endpoint_auth_method none) without a secret, with RFC 7591 defaults', async () => {
      const response = await register(server, { redirect_uris: ['http://127.0.0.1/native-callback'], token_endpoint_auth_method: 'none' });
      expect(response.status, JSON.stringify(response.body)).toBe(201);
      expect(response.body).not.toHaveProperty('client_secret');
      expect(response.body).not.toHaveProperty('client_secret_expires_at');
      expect(response.body).toMatchObject({
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
        client_name: '127.0.0.1',
        scope: 'properties:read reservations:read calendar:read',
      });
      const row = await findClientRow(response.body.client_id as string);
      expect(row).toMatchObject({ clientType: 'public', registeredBy: 'dynamic' });
      expect(await storedSecretHash(server, row.id)).toBeNull();
    });

    it('refuses a missing or wrong initial access token with 401 and a Bearer challenge', async () => {
      const before = await countClients(server);
      const missing = await register(server, { redirect_uris: ['https://planner.example/cb'] }, null);
      expect(missing.status).toBe(401);
      expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect(missing.body).toMatchObject({ error: 'invalid_token' });

      const wrong = await register(server, { redirect_uris: ['https://planner.example/cb'] }, `${INITIAL_ACCESS_TOKEN}x`);
      expect(wrong.status).toBe(401);
      expect(wrong.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
      expect(await countClients(server)).toBe(before);
    });

    it('answers invalid_redirect_uri and invalid_client_metadata (400) and creates nothing', async () => {
      const before = await countClients(server);
      const cases: [unknown, string][] = [
        [{ redirect_uris: ['http://planner.example/cb'] }, 'invalid_redirect_uri'],
        [{ redirect_uris: ['https://planner.example/cb'], grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'] }, 'invalid_client_metadata'],
        [{ redirect_uris: ['https://planner.example/cb'], response_types: ['token'] }, 'invalid_client_metadata'],
        [{ grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic' }, 'invalid_client_metadata'],
        [{ redirect_uris: 'https://planner.example/cb', token_endpoint_auth_method: 7 }, 'invalid_client_metadata'],
      ];
      for (const [body, error] of cases) {
        const response = await register(server, body);
        expect(response.status, JSON.stringify(body)).toBe(400);
        expect(response.body, JSON.stringify(body)).toMatchObject({ error, error_description: expect.any(String) });
      }
      // The metadata is JSON; the same members as a form are refused.
      const form = await fetch(`${server.url}/oauth/register`, {
        method: 'POST',
        headers: { authorization: `Bearer ${INITIAL_ACCESS_TOKEN}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ redirect_uris: 'https://planner.example/cb' }).toString(),
      });
      expect(form.status).toBe(400);
      expect(await form.json()).toMatchObject({ error: 'invalid_client_metadata' });
      expect(await countClients(server)).toBe(before);
    });
  });

  it('keeps secrets out of the tables and the audit log', async () => {
    expect(issuedSecrets.length).toBeGreaterThanOrEqual(8);
    const dump = await server.db.oneFirst(sql.type(z.object({ dump: z.string() }))`
      SELECT (SELECT coalesce(string_agg(row_to_json(c)::text, ''), '') FROM oauth_clients c)
          || (SELECT coalesce(string_agg(row_to_json(a)::text, ''), '') FROM audit_log a) AS dump`);
    for (const secret of issuedSecrets) expect(dump).not.toContain(secret);
    const actions = await server.db.anyFirst(sql.type(z.object({ action: z.string() }))`SELECT DISTINCT action FROM audit_log`);
    expect(actions).toEqual(expect.arrayContaining(['OAuthClientCreate', 'OAuthClientUpdate', 'OAuthClientSecretRotate', 'OAuthClientRevoke']));
  });
});

describe('client registration when the credentials are not configured', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    // An empty value counts as unset.
    server = await startOAuthTestServer({ LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', ADMIN_API_TOKEN: '', OAUTH_INITIAL_ACCESS_TOKEN: '' });
  });
  afterAll(() => server?.close());

  it('answers 503 admin_disabled on every admin route', async () => {
    for (const [method, path] of [
      ['GET', ADMIN_PATH],
      ['POST', ADMIN_PATH],
      ['GET', `${ADMIN_PATH}/c_x`],
      ['PUT', `${ADMIN_PATH}/c_x/redirect-uris`],
      ['POST', `${ADMIN_PATH}/c_x/secret`],
      ['DELETE', `${ADMIN_PATH}/c_x`],
    ] as const) {
      const response = await send(server, method, path, { body: method === 'GET' || method === 'DELETE' ? undefined : clientInput });
      expect(response.status, `${method} ${path}`).toBe(503);
      expect(response.body).toMatchObject({ error: 'admin_disabled' });
    }
  });

  it('disables dynamic registration (404) and rate-limits the endpoint per address', async () => {
    const first = await register(server, { redirect_uris: ['https://planner.example/cb'] });
    expect(first.status).toBe(404);
    expect(first.body).toMatchObject({ error: 'not_found' });
    let limited: JsonResponse | undefined;
    for (let attempt = 0; attempt < 12 && !limited; attempt += 1) {
      const response = await register(server, { redirect_uris: ['https://planner.example/cb'] });
      if (response.status === 429) limited = response;
      else expect(response.status).toBe(404);
    }
    expect(limited?.body).toMatchObject({ error: 'temporarily_unavailable' });
    expect(await countClients(server)).toBe(0);
  });
});

describe('client metadata that could mislead users or policies', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer({ LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' });
  });
  afterAll(() => server?.close());

  const BIDI_NAMES = ['\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069'].map((control) => `Trusted ${control}ppa Bank`);

  it('refuses names with bidirectional override or isolate characters, from the admin API and dynamic registration', async () => {
    const before = await countClients(server);
    for (const name of BIDI_NAMES) {
      const admin = await send(server, 'POST', ADMIN_PATH, { body: { ...clientInput, name } });
      expect(admin.status, JSON.stringify(name)).toBe(400);
      expect(admin.body).toMatchObject({ error: 'invalid_client_metadata' });
    }
    // Dynamic registration is rate-limited (10 a minute): two samples are enough, the check is shared.
    for (const name of [BIDI_NAMES[4]!, BIDI_NAMES[7]!]) {
      const dynamic = await register(server, { client_name: name, redirect_uris: ['https://planner.example/cb'] });
      expect(dynamic.status, JSON.stringify(name)).toBe(400);
      expect(dynamic.body).toMatchObject({ error: 'invalid_client_metadata' });
    }
    expect(await countClients(server)).toBe(before);
  });

  it.each([
    ['a semicolon', 'https://a;b.example/cb'],
    ['a comma', 'https://a,b.example/cb'],
    ['a quote', "https://a'b.example/cb"],
    ['a double quote', 'https://a"b.example/cb'],
    ['an asterisk', 'https://*.example/cb'],
    ['an underscore', 'https://a_b.example/cb'],
    ['a trailing dot', 'https://client.example./cb'],
  ])('refuses a redirect URI whose host contains %s', async (_label, uri) => {
    const response = await send(server, 'POST', ADMIN_PATH, { body: { ...clientInput, redirect_uris: [uri] } });
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ error: 'invalid_redirect_uri' });
  });

  it('still accepts DNS names, IDNs (as punycode) and IP literals', async () => {
    for (const uri of ['https://client-1.example.com/cb', 'https://bücher.example/cb', 'https://192.0.2.1/cb', 'https://[2001:db8::1]/cb', 'http://127.0.0.1:8080/cb', 'http://[::1]/cb']) {
      const response = await send(server, 'POST', ADMIN_PATH, { body: { ...clientInput, redirect_uris: [uri] } });
      expect(response.status, `${uri}: ${JSON.stringify(response.body)}`).toBe(201);
    }
  });

  it('answers dynamic registration from the same view as the admin API', async () => {
    const response = await register(server, { client_name: 'Viewed app', redirect_uris: ['https://viewed.example/cb'] });
    expect(response.status).toBe(201);
    const admin = await send(server, 'GET', `${ADMIN_PATH}/${response.body.client_id as string}`);
    const { client_secret: _secret, client_secret_expires_at: _expires, client_name: clientName, client_id_issued_at: issuedAt, ...view } = response.body;
    expect(view).toEqual(admin.body);
    expect(clientName).toBe('Viewed app');
    expect(issuedAt).toBe(Math.floor(Date.parse(admin.body.created_at as string) / 1000));
  });
});
