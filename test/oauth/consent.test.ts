import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { hashBearerValue } from '../../platform/secrets';
import { SCOPE_DESCRIPTIONS } from '../../platform/oauth-server/scopes';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { authorizePath, parseForm, TestBrowser, signedInBrowser } from '../helpers/oauth-browser';
import { auditRows, postForm } from './token-helpers';

/** The consent page and its decision POST, driven by parsing and submitting the HTML form. */
describe('consent', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer();
  });

  afterAll(async () => {
    await server?.close();
  });

  async function consentPage(browser: TestBrowser, clientId: string, scope = 'properties:read reservations:read') {
    const request = authorizePath({ clientId, scope });
    const response = await browser.get(request.path);
    expect(response.status).toBe(200);
    return { response, page: await response.text(), ...request };
  }

  const countCodes = async (clientId: string) =>
    server.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM oauth_authorization_codes WHERE client_id = ${clientId}`);

  it('shows the client name and a sentence per scope, with framing and caching headers and no script', async () => {
    const { client } = await server.createClient({ name: 'Acme <Bookings> & "Co"' });
    const { browser } = await signedInBrowser(server);
    const { response, page } = await consentPage(browser, client.id);
    expect(page).toContain('Acme &#60;Bookings&#62; &#38; &#34;Co&#34;');
    expect(page).not.toContain('<Bookings>');
    expect(page).toContain(SCOPE_DESCRIPTIONS['properties:read']);
    expect(page).toContain(SCOPE_DESCRIPTIONS['reservations:read']);
    expect(page).not.toContain(SCOPE_DESCRIPTIONS['offline_access']);
    expect(page).toContain('<meta name="viewport"');
    expect(page.toLowerCase()).not.toContain('<script');
    expect(page).not.toMatch(/\son\w+=/i);
    expect(response.headers.get('x-frame-options')).toBe('DENY');
    const csp = response.headers.get('content-security-policy')!;
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('script-src');
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    const form = parseForm(page);
    expect(form.method).toBe('post');
    expect(form.action).toBe('/oauth/authorize/decision');
    expect(Object.keys(form.fields).sort()).toEqual(['csrf_token', 'request_id']);
    expect(form.buttons.map((button) => button.value)).toEqual(['approve', 'deny']);
    expect(page).not.toContain('linked to');
  });

  it('tells the user that a voice client links the account to the voice assistant', async () => {
    const { client } = await server.createClient({ name: 'Google Home', kind: 'voice', scopes: ['devices:control', 'offline_access'] });
    const { browser } = await signedInBrowser(server);
    const { page } = await consentPage(browser, client.id, 'devices:control offline_access');
    expect(page).toContain('Your account will be linked to Google Home');
    expect(page).toContain('voice assistant');
    expect(page).toContain(SCOPE_DESCRIPTIONS['devices:control']);
  });

  /** A voice platform's authorization request as a browser that is not signed in follows it: authorize, login, consent. */
  async function voiceConsentPage(clientId: string, redirectUri: string) {
    const user = await server.createUser(`voice-${Math.random().toString(36).slice(2)}@example.com`);
    const browser = new TestBrowser(server.url);
    const toLogin = await browser.get(authorizePath({ clientId, redirectUri, scope: 'devices:control reservations:read' }).path);
    expect(toLogin.status).toBe(303);
    const returnTo = new URL(toLogin.headers.get('location')!, server.url).searchParams.get('return_to')!;
    const signedIn = await browser.signIn(user.email, user.password, returnTo);
    expect(signedIn.headers.get('location')).toBe(returnTo);
    const consent = await browser.get(returnTo);
    expect(consent.status).toBe(200);
    return consent.text();
  }

  it('tells the user of a Google voice client that the account is linked to Google, never to one of its products', async () => {
    const redirectUri = 'https://oauth-redirect.googleusercontent.com/r/pm-home';
    const { client } = await server.createClient({
      name: 'Google Home Assistant Action',
      kind: 'voice',
      voicePlatform: 'google',
      tokenEndpointAuthMethod: 'client_secret_post',
      redirectUris: [redirectUri],
      scopes: ['devices:control', 'reservations:read'],
    });
    const page = await voiceConsentPage(client.id, redirectUri);
    expect(page).toContain('<title>Allow Google?</title>');
    expect(page).toContain('<strong>Your account will be linked to Google.</strong>');
    expect(page).toContain('By signing in, you are authorizing Google to control your devices.');
    expect(page).not.toContain('Google Home');
    expect(page).not.toContain('Google Assistant');
    expect(page).not.toContain('Alexa');
    expect(parseForm(page).buttons.map((button) => button.value)).toEqual(['approve', 'deny']);
  });

  it('tells the user of an Alexa voice client that the account is linked to Alexa', async () => {
    const redirectUri = 'https://layla.amazon.com/api/skill/link/M2CONSENT';
    const { client } = await server.createClient({ name: 'Villa skill', kind: 'voice', voicePlatform: 'alexa', redirectUris: [redirectUri], scopes: ['devices:control', 'reservations:read'] });
    const page = await voiceConsentPage(client.id, redirectUri);
    expect(page).toContain('<title>Allow Alexa?</title>');
    expect(page).toContain('<strong>Your account will be linked to Alexa.</strong>');
    expect(page).not.toContain('Google');
    expect(page).not.toContain('Villa skill');
  });

  it('approve redirects (303) with code, state and iss; the code is stored only as a hash; audited', async () => {
    const { client } = await server.createClient();
    const { browser, user } = await signedInBrowser(server);
    const { page, state } = await consentPage(browser, client.id);
    const response = await browser.submit(page, {}, 'approve');
    expect(response.status).toBe(303);
    const location = new URL(response.headers.get('location')!);
    expect(`${location.origin}${location.pathname}`).toBe('https://client.example/callback');
    const code = location.searchParams.get('code')!;
    expect(code).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(location.searchParams.get('state')).toBe(state);
    expect(location.searchParams.get('iss')).toBe(server.url);

    const stored = await server.db.any(sql.type(z.object({ codeHash: z.string(), scopes: z.array(z.string()) }))`
      SELECT code_hash AS "codeHash", scopes FROM oauth_authorization_codes WHERE client_id = ${client.id}`);
    expect(stored).toHaveLength(1);
    expect(stored[0]!.codeHash).toBe(hashBearerValue(code));
    expect(stored[0]!.codeHash).not.toBe(code);
    expect(stored[0]!.scopes.sort()).toEqual(['properties:read', 'reservations:read']);
    const dump = await server.db.oneFirst(sql.type(z.object({ dump: z.string() }))`
      SELECT string_agg(row_to_json(c)::text, ' ') AS dump FROM oauth_authorization_codes c`);
    expect(dump).not.toContain(code);

    const audit = await server.db.any(sql.type(z.object({ outcome: z.string(), details: z.record(z.unknown()) }))`
      SELECT outcome, details FROM audit_log WHERE action = 'OAuthAuthorize' AND client_id = ${client.id} AND user_id = ${user.id}`);
    expect(audit).toHaveLength(1);
    expect(audit[0]!.outcome).toBe('success');
    expect(JSON.stringify(audit[0]!.details)).not.toContain(code);
  });

  it('deny redirects (303) with access_denied, state and iss, and issues nothing', async () => {
    const { client } = await server.createClient();
    const { browser } = await signedInBrowser(server);
    const { page, state } = await consentPage(browser, client.id);
    const response = await browser.submit(page, {}, 'deny');
    expect(response.status).toBe(303);
    const location = new URL(response.headers.get('location')!);
    expect(Object.fromEntries(location.searchParams)).toMatchObject({ error: 'access_denied', state, iss: server.url });
    expect(location.searchParams.get('code')).toBeNull();
    expect(await countCodes(client.id)).toBe(0);
  });

  it('refuses a decision without the CSRF token or with a wrong one (403), and issues no code', async () => {
    const { client } = await server.createClient();
    const { browser } = await signedInBrowser(server);
    const { page } = await consentPage(browser, client.id);
    const form = parseForm(page);
    const csrf = form.fields.csrf_token!;
    // One character off (never the character it already ends with, or the token would be the genuine one).
    const almostCsrf = `${csrf.slice(0, -1)}${csrf.endsWith('A') ? 'B' : 'A'}`;
    const attempts: Record<string, string>[] = [
      { request_id: form.fields.request_id!, decision: 'approve' },
      { request_id: form.fields.request_id!, csrf_token: '', decision: 'approve' },
      { request_id: form.fields.request_id!, csrf_token: 'x'.repeat(43), decision: 'approve' },
      { request_id: form.fields.request_id!, csrf_token: almostCsrf, decision: 'approve' },
      { request_id: 'not-a-uuid', csrf_token: form.fields.csrf_token!, decision: 'approve' },
      { request_id: '00000000-0000-4000-8000-000000000000', csrf_token: form.fields.csrf_token!, decision: 'approve' },
    ];
    const auditedBefore = (await auditRows(server, 'OAuthConsentCsrfRejected')).length;
    for (const attempt of attempts) {
      const response = await browser.post('/oauth/authorize/decision', attempt);
      expect(response.status).toBe(403);
      expect(response.headers.get('location')).toBeNull();
      expect(response.headers.get('x-frame-options')).toBe('DENY');
      expect(await response.text()).not.toContain('<script');
    }
    expect(await countCodes(client.id)).toBe(0);
    // Each refusal is audited with the reason, the user and the address; never the token presented.
    const audited = (await auditRows(server, 'OAuthConsentCsrfRejected')).slice(auditedBefore);
    expect(audited.map((row) => (row.details as { reason: string }).reason)).toEqual([
      'csrf_token_missing',
      'csrf_token_missing',
      'csrf_token_wrong',
      'csrf_token_wrong',
      'request_id_malformed',
      'request_unknown',
    ]);
    for (const row of audited) expect(row).toMatchObject({ outcome: 'failure', actor_type: 'user', ip_address: '127.0.0.1', user_id: expect.any(String) });
    expect(audited.slice(0, 4).map((row) => row.client_id)).toEqual(Array(4).fill(client.id));
    expect(JSON.stringify(audited)).not.toContain(csrf);
    expect(JSON.stringify(audited)).not.toContain(almostCsrf);
    // The genuine form still works afterwards.
    expect((await browser.submit(page, {}, 'approve')).status).toBe(303);
    expect(await countCodes(client.id)).toBe(1);
  });

  it("refuses another user's decision on a request, even with its CSRF token", async () => {
    const { client } = await server.createClient();
    const victim = await signedInBrowser(server);
    const attacker = await signedInBrowser(server);
    const { page } = await consentPage(victim.browser, client.id);
    expect((await attacker.browser.submit(page, {}, 'approve')).status).toBe(403);
    expect((await new TestBrowser(server.url).submit(page, {}, 'approve')).status).toBe(403);
    expect(await countCodes(client.id)).toBe(0);
    const audited = (await auditRows(server, 'OAuthConsentCsrfRejected')).filter((row) => row.client_id === client.id);
    expect(audited.map((row) => [(row.details as { reason: string }).reason, row.user_id])).toEqual([
      ['other_user', attacker.user.id],
      ['not_signed_in', null],
    ]);
  });

  it('refuses a replayed decision', async () => {
    const { client } = await server.createClient();
    const { browser } = await signedInBrowser(server);
    const { page } = await consentPage(browser, client.id);
    expect((await browser.submit(page, {}, 'approve')).status).toBe(303);
    for (const decision of ['approve', 'deny']) {
      const replay = await browser.submit(page, {}, decision);
      expect(replay.status).toBe(400);
      expect(replay.headers.get('location')).toBeNull();
    }
    expect(await countCodes(client.id)).toBe(1);
  });

  it('refuses an expired request', async () => {
    const { client } = await server.createClient();
    const { browser } = await signedInBrowser(server);
    const { page } = await consentPage(browser, client.id);
    const requestId = parseForm(page).fields.request_id!;
    await server.db.query(sql.unsafe`UPDATE oauth_authorization_requests SET expires_at = now() - interval '1 second' WHERE id = ${requestId}`);
    expect((await browser.submit(page, {}, 'approve')).status).toBe(400);
    expect(await countCodes(client.id)).toBe(0);
  });

  it('stores the pending request for ten minutes with only a hash of the CSRF token', async () => {
    const { client } = await server.createClient();
    const { browser } = await signedInBrowser(server);
    const { page } = await consentPage(browser, client.id);
    const { request_id: requestId, csrf_token: csrfToken } = parseForm(page).fields;
    const row = await server.db.one(sql.type(z.object({ csrfHash: z.string(), seconds: z.number() }))`
      SELECT csrf_hash AS "csrfHash", extract(epoch FROM expires_at - created_at)::int AS seconds FROM oauth_authorization_requests WHERE id = ${requestId!}`);
    expect(row.csrfHash).toBe(hashBearerValue(csrfToken!));
    expect(row.seconds).toBe(600);
  });

  it('skips consent when an active grant covers the scopes, and asks again for a wider scope', async () => {
    const { client } = await server.createClient();
    const { browser } = await signedInBrowser(server);
    const first = await consentPage(browser, client.id, 'properties:read reservations:read');
    expect((await browser.submit(first.page, {}, 'approve')).status).toBe(303);

    for (const scope of ['properties:read reservations:read', 'properties:read']) {
      const again = authorizePath({ clientId: client.id, scope });
      const response = await browser.get(again.path);
      expect(response.status).toBe(303);
      const location = new URL(response.headers.get('location')!);
      expect(location.searchParams.get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(location.searchParams.get('state')).toBe(again.state);
      expect(location.searchParams.get('iss')).toBe(server.url);
    }

    const wider = await browser.get(authorizePath({ clientId: client.id, scope: 'properties:read offline_access' }).path);
    expect(wider.status).toBe(200);
    const page = await wider.text();
    expect(page).toContain(SCOPE_DESCRIPTIONS['offline_access']);
    expect((await browser.submit(page, {}, 'approve')).status).toBe(303);
    const grant = await server.db.one(sql.type(z.object({ scopes: z.array(z.string()) }))`
      SELECT scopes FROM oauth_grants WHERE client_id = ${client.id} AND revoked_at IS NULL`);
    expect(grant.scopes.sort()).toEqual(['offline_access', 'properties:read', 'reservations:read']);
  });

  it('asks again after the grant was revoked', async () => {
    const { client } = await server.createClient();
    const { browser } = await signedInBrowser(server);
    const first = await consentPage(browser, client.id);
    expect((await browser.submit(first.page, {}, 'approve')).status).toBe(303);
    await server.db.query(sql.unsafe`UPDATE oauth_grants SET revoked_at = now() WHERE client_id = ${client.id}`);
    expect((await browser.get(authorizePath({ clientId: client.id, scope: 'properties:read reservations:read' }).path)).status).toBe(200);
  });

  it('issues a code the token endpoint redeems with the PKCE verifier', async () => {
    const { client, clientSecret } = await server.createClient();
    const { browser } = await signedInBrowser(server);
    const { page, pkce } = await consentPage(browser, client.id);
    const location = new URL((await browser.submit(page, {}, 'approve')).headers.get('location')!);
    const response = await postForm(
      server,
      '/oauth/token',
      { grant_type: 'authorization_code', code: location.searchParams.get('code')!, redirect_uri: 'https://client.example/callback', code_verifier: pkce.verifier },
      { authorization: `Basic ${Buffer.from(`${client.id}:${clientSecret!}`).toString('base64')}` },
    );
    expect(response.status, response.text).toBe(200);
    expect(response.body.access_token).toBeTruthy();
    expect((response.body.scope as string).split(' ').sort()).toEqual(['properties:read', 'reservations:read']);
  });

  it('always asks again for a public client, even with a grant: anyone can send its id, a loopback port and their own PKCE', async () => {
    const { client } = await server.createClient({
      tokenEndpointAuthMethod: 'none',
      grantTypes: ['authorization_code'],
      redirectUris: ['http://127.0.0.1/callback'],
      scopes: ['properties:read'],
    });
    const { browser } = await signedInBrowser(server);
    const first = await browser.get(authorizePath({ clientId: client.id, redirectUri: 'http://127.0.0.1:1111/callback' }).path);
    expect(first.status).toBe(200);
    const approved = await browser.submit(await first.text(), {}, 'approve');
    expect(new URL(approved.headers.get('location')!).searchParams.get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // Another "instance" of the app (an attacker's listener on another port, with the attacker's PKCE).
    const attack = await browser.get(authorizePath({ clientId: client.id, redirectUri: 'http://127.0.0.1:2222/callback' }).path);
    expect(attack.status).toBe(200);
    expect(attack.headers.get('location')).toBeNull();
    expect(parseForm(await attack.text()).action).toBe('/oauth/authorize/decision');
    expect(await countCodes(client.id)).toBe(1);
  });

  it('marks a self-registered client as unverified on the consent page', async () => {
    const { client: dynamic } = await server.createClient({ name: 'Bank of Trust', registeredBy: 'dynamic' });
    const { client: admin } = await server.createClient({ name: 'Vetted app' });
    const { browser } = await signedInBrowser(server);
    const dynamicPage = (await consentPage(browser, dynamic.id)).page;
    expect(dynamicPage).toContain('<h1>Allow Bank of Trust (unverified) to use your account?</h1>');
    expect(dynamicPage).toContain('Unverified application.');
    const adminPage = (await consentPage(browser, admin.id)).page;
    expect(adminPage).not.toMatch(/unverified/i);
  });
});
