import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { checkVoiceClientScopes, ClientMetadataError, voiceClientMetadata } from '../../platform/oauth-server/client-metadata';
import { hashBearerValue } from '../../platform/secrets';
import { ADMIN_TOKEN, INITIAL_ACCESS_TOKEN, startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { authorizePath, TestBrowser, WITHOUT_PKCE } from '../helpers/oauth-browser';
import { basicAuth, postForm } from '../oauth/token-helpers';

/**
 * Voice platforms as clients an operator creates (admin API): the Alexa and Google presets, the voice
 * rules every way of creating or changing a client obeys, and a created client linking an account
 * through our real endpoints the way its platform does.
 */

const VENDOR_ID = 'M2TESTVENDOR7';
const PROJECT_ID = 'pm-home-sandbox';
const VOICE_PATH = '/api/v1/admin/oauth/voice-clients';
const CLIENTS_PATH = '/api/v1/admin/oauth/clients';

const alexaUris = (vendorId: string) => [
  `https://pitangui.amazon.com/api/skill/link/${vendorId}`,
  `https://layla.amazon.com/api/skill/link/${vendorId}`,
  `https://alexa.amazon.co.jp/api/skill/link/${vendorId}`,
];
const googleUris = (projectId: string) => [`https://oauth-redirect.googleusercontent.com/r/${projectId}`, `https://oauth-redirect-sandbox.googleusercontent.com/r/${projectId}`];

interface JsonAnswer {
  status: number;
  body: Record<string, unknown>;
}

describe('voice clients created by an operator', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer({ ALEXA_VENDOR_ID: VENDOR_ID, GOOGLE_HOME_PROJECT_ID: PROJECT_ID });
  });
  afterAll(() => server?.close());

  async function send(method: string, path: string, body?: unknown, token: string | null = ADMIN_TOKEN): Promise<JsonAnswer> {
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  const countClients = () => server.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM oauth_clients`);

  async function refusesAndCreatesNothing(path: string, body: unknown, error: string) {
    const before = await countClients();
    const answer = await send('POST', path, body);
    expect(answer.status, JSON.stringify(answer.body)).toBe(400);
    expect(answer.body).toMatchObject({ error, message: expect.any(String) });
    expect(await countClients()).toBe(before);
    return answer.body.message as string;
  }

  it('creates an Alexa client from ALEXA_VENDOR_ID: HTTP Basic, both grants, the three regional redirect URIs; the secret once, audited without it', async () => {
    const created = await send('POST', VOICE_PATH, { platform: 'alexa' });
    expect(created.status).toBe(201);
    const clientId = created.body.client_id as string;
    const secret = created.body.client_secret as string;
    expect(created.body).toMatchObject({
      name: 'Alexa',
      kind: 'voice',
      voice_platform: 'alexa',
      client_type: 'confidential',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      scopes: ['devices:control', 'properties:read', 'reservations:read'],
      registered_by: 'admin',
    });
    expect(created.body.redirect_uris).toEqual(alexaUris(VENDOR_ID));
    expect(secret).toMatch(/^[A-Za-z0-9_-]{40,}$/);

    const stored = await server.db.one(sql.type(z.object({ secretHash: z.string(), voicePlatform: z.string() }))`
      SELECT secret_hash AS "secretHash", voice_platform AS "voicePlatform" FROM oauth_clients WHERE id = ${clientId}`);
    expect(stored).toEqual({ secretHash: hashBearerValue(secret), voicePlatform: 'alexa' });

    const read = await send('GET', `${CLIENTS_PATH}/${clientId}`);
    expect(read.body).toMatchObject({ client_id: clientId, voice_platform: 'alexa' });
    expect(read.body).not.toHaveProperty('client_secret');

    const audit = await server.db.one(sql.type(z.object({ actorType: z.string(), actorId: z.string().nullable(), details: z.record(z.unknown()) }))`
      SELECT actor_type AS "actorType", actor_id AS "actorId", details FROM audit_log WHERE action = 'OAuthClientCreate' AND client_id = ${clientId}`);
    expect(audit).toMatchObject({ actorType: 'operator', actorId: 'admin-api', details: { kind: 'voice', voice_platform: 'alexa', redirect_uris: alexaUris(VENDOR_ID) } });
    expect(JSON.stringify(audit)).not.toContain(secret);
  });

  it('creates an Alexa client for another vendor with body credentials (REQUEST_BODY_CREDENTIALS), a name and scopes', async () => {
    const created = await send('POST', VOICE_PATH, {
      platform: 'alexa',
      name: 'Villa Rentals skill',
      vendor_id: 'M1OTHERVENDOR',
      token_endpoint_auth_method: 'client_secret_post',
      scopes: ['reservations:read'],
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'Villa Rentals skill', voice_platform: 'alexa', token_endpoint_auth_method: 'client_secret_post', scopes: ['reservations:read'] });
    expect(created.body.redirect_uris).toEqual(alexaUris('M1OTHERVENDOR'));
  });

  it('creates a Google client from GOOGLE_HOME_PROJECT_ID: body credentials and the production and sandbox redirect URIs', async () => {
    const created = await send('POST', VOICE_PATH, { platform: 'google' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name: 'Google',
      kind: 'voice',
      voice_platform: 'google',
      client_type: 'confidential',
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['authorization_code', 'refresh_token'],
    });
    expect(created.body.redirect_uris).toEqual(googleUris(PROJECT_ID));
    expect(created.body.client_secret).toEqual(expect.any(String));
  });

  it('refuses what a platform cannot do with 400 and creates nothing', async () => {
    expect(await refusesAndCreatesNothing(VOICE_PATH, { platform: 'google', token_endpoint_auth_method: 'client_secret_basic' }, 'invalid_client_metadata')).toContain(
      'Google authenticates with client_secret_post',
    );
    expect(await refusesAndCreatesNothing(VOICE_PATH, { platform: 'alexa', project_id: 'my-project' }, 'invalid_client_metadata')).toContain('vendor_id');
    expect(await refusesAndCreatesNothing(VOICE_PATH, { platform: 'google', vendor_id: 'M2X' }, 'invalid_client_metadata')).toContain('project_id');
    expect(await refusesAndCreatesNothing(VOICE_PATH, { platform: 'alexa', vendor_id: 'M2/../x' }, 'invalid_client_metadata')).toContain('vendor id');
    expect(await refusesAndCreatesNothing(VOICE_PATH, { platform: 'google', project_id: 'My Project' }, 'invalid_client_metadata')).toContain('project id');
    expect(await refusesAndCreatesNothing(VOICE_PATH, { platform: 'alexa', scopes: ['admin:everything'] }, 'invalid_client_metadata')).toContain('unsupported scope');
    await refusesAndCreatesNothing(VOICE_PATH, { platform: 'cortana' }, 'invalid_request');
    await refusesAndCreatesNothing(VOICE_PATH, {}, 'invalid_request');
  });

  it('needs the admin token', async () => {
    const before = await countClients();
    expect((await send('POST', VOICE_PATH, { platform: 'alexa' }, null)).status).toBe(401);
    expect((await send('POST', VOICE_PATH, { platform: 'alexa' }, 'wrong-token')).status).toBe(401);
    expect(await countClients()).toBe(before);
  });

  it('says which setting is missing when neither the request nor the configuration names the vendor or project', () => {
    const defaults = { alexaVendorId: undefined, googleProjectId: undefined };
    expect(() => voiceClientMetadata({ platform: 'alexa' }, defaults)).toThrow(new ClientMetadataError('invalid_client_metadata', 'vendor_id is required for an Alexa client (or set ALEXA_VENDOR_ID)'));
    expect(() => voiceClientMetadata({ platform: 'google' }, defaults)).toThrow(/GOOGLE_HOME_PROJECT_ID/);
  });

  it("an Alexa client never has more scopes than Amazon's skill manifest takes (15), whatever scopes there come to be", () => {
    const scopes = Array.from({ length: 16 }, (_, index) => `scope-${index}:read`);
    expect(() => checkVoiceClientScopes('alexa', scopes)).toThrow(new ClientMetadataError('invalid_client_metadata', "an Alexa client has at most 15 scopes (the skill manifest's limit)"));
    expect(() => checkVoiceClientScopes('alexa', scopes.slice(0, 15))).not.toThrow();
    expect(() => checkVoiceClientScopes('google', scopes)).not.toThrow();
  });

  it('the generic admin creation takes a voice client only with its platform, and only with that platform\'s redirect URIs', async () => {
    const voice = {
      name: 'Alexa by hand',
      kind: 'voice',
      grant_types: ['authorization_code', 'refresh_token'],
      scopes: ['devices:control'],
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: alexaUris(VENDOR_ID),
    };
    expect(await refusesAndCreatesNothing(CLIENTS_PATH, voice, 'invalid_client_metadata')).toContain('voice_platform');
    expect(
      await refusesAndCreatesNothing(CLIENTS_PATH, { ...voice, voice_platform: 'alexa', redirect_uris: ['https://evil.example/api/skill/link/M2X'] }, 'invalid_redirect_uri'),
    ).toContain("not one of Alexa's");
    await refusesAndCreatesNothing(CLIENTS_PATH, { ...voice, voice_platform: 'alexa', redirect_uris: ['http://pitangui.amazon.com/api/skill/link/M2X'] }, 'invalid_redirect_uri');
    await refusesAndCreatesNothing(CLIENTS_PATH, { ...voice, voice_platform: 'alexa', redirect_uris: [`https://pitangui.amazon.com/api/skill/link/${VENDOR_ID}?x=1`] }, 'invalid_redirect_uri');
    await refusesAndCreatesNothing(
      CLIENTS_PATH,
      { ...voice, voice_platform: 'alexa', redirect_uris: [alexaUris('M1A')[0], alexaUris('M1B')[1]] },
      'invalid_redirect_uri',
    );
    await refusesAndCreatesNothing(CLIENTS_PATH, { ...voice, voice_platform: 'google' }, 'invalid_client_metadata');
    await refusesAndCreatesNothing(CLIENTS_PATH, { ...voice, voice_platform: 'alexa', grant_types: ['authorization_code'] }, 'invalid_client_metadata');
    expect(
      await refusesAndCreatesNothing(CLIENTS_PATH, { ...voice, kind: 'third_party', voice_platform: 'alexa' }, 'invalid_client_metadata'),
    ).toContain('only for voice clients');

    const created = await send('POST', CLIENTS_PATH, { ...voice, voice_platform: 'alexa', redirect_uris: alexaUris(VENDOR_ID).slice(0, 1) });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ kind: 'voice', voice_platform: 'alexa', redirect_uris: alexaUris(VENDOR_ID).slice(0, 1) });
  });

  it("keeps a voice client's redirect URIs its platform's when an operator replaces them", async () => {
    const created = await send('POST', VOICE_PATH, { platform: 'google' });
    const path = `${CLIENTS_PATH}/${created.body.client_id as string}/redirect-uris`;
    const refused = await send('PUT', path, { redirect_uris: ['https://dashboard.example/callback'] });
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ error: 'invalid_redirect_uri' });
    const moved = await send('PUT', path, { redirect_uris: googleUris('pm-home-live') });
    expect(moved.status).toBe(200);
    expect(moved.body.redirect_uris).toEqual(googleUris('pm-home-live'));
  });

  it('lists every client with its voice platform (null for the others)', async () => {
    const other = await server.createClient({ name: 'Dashboard' });
    const listing = await send('GET', CLIENTS_PATH);
    const clients = listing.body.clients as Array<{ client_id: string; kind: string; voice_platform: string | null }>;
    expect(clients.find((client) => client.client_id === other.client.id)).toMatchObject({ kind: 'third_party', voice_platform: null });
    expect(clients.filter((client) => client.voice_platform === 'alexa').length).toBeGreaterThanOrEqual(2);
    expect(clients.filter((client) => client.voice_platform === 'google').length).toBeGreaterThanOrEqual(1);
  });

  it('dynamic registration (RFC 7591) never creates a voice client', async () => {
    const response = await fetch(`${server.url}/oauth/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${INITIAL_ACCESS_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'Alexa', redirect_uris: alexaUris(VENDOR_ID), grant_types: ['authorization_code', 'refresh_token'], kind: 'voice', voice_platform: 'alexa' }),
    });
    expect(response.status).toBe(201);
    const registered = (await response.json()) as Record<string, unknown>;
    expect(registered).toMatchObject({ kind: 'third_party', voice_platform: null, registered_by: 'dynamic' });
    const stored = await server.db.one(sql.type(z.object({ kind: z.string(), voicePlatform: z.string().nullable() }))`
      SELECT kind, voice_platform AS "voicePlatform" FROM oauth_clients WHERE id = ${registered.client_id as string}`);
    expect(stored).toEqual({ kind: 'third_party', voicePlatform: null });
  });

  /** The platform's side of account linking, through our login and consent pages (Google's without PKCE); answers the code. */
  async function linkThroughConsent(clientId: string, redirectUri: string, scope: string, pkce = true) {
    const user = await server.createUser(`voice-${Math.random().toString(36).slice(2)}@example.com`);
    const browser = new TestBrowser(server.url);
    const request = authorizePath({ clientId, redirectUri, scope, ...(pkce ? {} : { extra: WITHOUT_PKCE }) });
    const toLogin = await browser.get(request.path);
    expect(toLogin.status).toBe(303);
    const signedIn = await browser.signIn(user.email, user.password, new URL(toLogin.headers.get('location')!, server.url).searchParams.get('return_to')!);
    const consent = await browser.get(signedIn.headers.get('location')!);
    expect(consent.status).toBe(200);
    const approved = await browser.submit(await consent.text(), {}, 'approve');
    const location = new URL(approved.headers.get('location')!);
    expect(`${location.origin}${location.pathname}`).toBe(redirectUri);
    expect(location.searchParams.get('state')).toBe(request.state);
    return { code: location.searchParams.get('code')!, verifier: request.pkce.verifier };
  }

  it('an Alexa client links an account as Alexa does: PKCE, HTTP Basic at the token endpoint, a refresh token', async () => {
    const created = await send('POST', VOICE_PATH, { platform: 'alexa' });
    const clientId = created.body.client_id as string;
    const redirectUri = alexaUris(VENDOR_ID)[1]!;
    const { code, verifier } = await linkThroughConsent(clientId, redirectUri, 'devices:control reservations:read');
    const tokens = await postForm(
      server,
      '/oauth/token',
      { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier },
      { authorization: basicAuth(clientId, created.body.client_secret as string) },
    );
    expect(tokens.status, tokens.text).toBe(200);
    expect(tokens.body).toMatchObject({ token_type: 'Bearer', access_token: expect.any(String), refresh_token: expect.any(String), expires_in: expect.any(Number) });
  });

  it('a Google client links an account as Google does: no PKCE, credentials in the body', async () => {
    const created = await send('POST', VOICE_PATH, { platform: 'google' });
    const clientId = created.body.client_id as string;
    const redirectUri = googleUris(PROJECT_ID)[0]!;
    const { code } = await linkThroughConsent(clientId, redirectUri, 'devices:control', false);
    const tokens = await postForm(server, '/oauth/token', {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      client_id: clientId,
      client_secret: created.body.client_secret as string,
    });
    expect(tokens.status, tokens.text).toBe(200);
    expect(tokens.body).toMatchObject({ token_type: 'Bearer', refresh_token: expect.any(String) });
  });
});
