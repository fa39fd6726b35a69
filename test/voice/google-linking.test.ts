import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { upsertGrant } from '../../db/queries/oauth-grants';
import { voiceClientMetadata } from '../../platform/oauth-server/client-metadata';
import { createPkcePair } from '../../platform/pkce';
import { hashBearerValue } from '../../platform/secrets';
import { authorizePath, signedInBrowser, TestBrowser, WITHOUT_PKCE } from '../helpers/oauth-browser';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows, grantOfRefreshToken, postForm, type FormResponse, type TestClient, type Tokens } from '../oauth/token-helpers';

/**
 * Google's account linking is a plain authorization code flow: no code_challenge at /oauth/authorize,
 * no code_verifier at /oauth/token, the client secret in the body. A Google voice client (confidential)
 * may do that (RFC 9700 section 2.1.1); no other client may, a code issued without a challenge is
 * never redeemed with a verifier (downgrade, RFC 9700 section 4.8.2), and PKCE a Google client does
 * send is enforced as for anyone.
 */

const PROJECT_ID = 'pm-home-test';
const GOOGLE_REDIRECT = `https://oauth-redirect.googleusercontent.com/r/${PROJECT_ID}`;
const ALEXA_REDIRECT = 'https://pitangui.amazon.com/api/skill/link/M2AAAAAAAAAAAA';
const SCOPE = 'properties:read reservations:read';

interface Google extends TestClient {
  clientSecret: string;
}

/** A token request as Google sends it: form-encoded, the client's credentials in the body. */
function asGoogle(server: OAuthTestServer, google: Google, parameters: Record<string, string>): Promise<FormResponse> {
  return postForm(server, '/oauth/token', { ...parameters, client_id: google.client.id, client_secret: google.clientSecret });
}

function exchange(server: OAuthTestServer, google: Google, code: string, extra: Record<string, string> = {}): Promise<FormResponse> {
  return asGoogle(server, google, { grant_type: 'authorization_code', code, redirect_uri: GOOGLE_REDIRECT, ...extra });
}

function tokensOf(response: FormResponse): Tokens {
  expect(response.status, response.text).toBe(200);
  return response.body as unknown as Tokens;
}

/** A signed-in user's authorization request, approved on the consent page (or answered at once for a covering grant); the redirect it ends in. */
async function approve(browser: TestBrowser, path: string): Promise<URL> {
  const authorize = await browser.get(path);
  const decision = authorize.status === 200 ? await browser.submit(await authorize.text(), {}, 'approve') : authorize;
  expect(decision.status).toBe(303);
  return new URL(decision.headers.get('location')!);
}

const storedChallenges = (server: OAuthTestServer, code: string) =>
  server.db.one(sql.type(z.object({ codeChallenge: z.string().nullable(), requestChallenges: z.array(z.string().nullable()) }))`
    SELECT code.code_challenge AS "codeChallenge",
           array(SELECT request.code_challenge FROM oauth_authorization_requests request
                 WHERE request.client_id = code.client_id AND request.redirect_uri = code.redirect_uri ORDER BY request.created_at) AS "requestChallenges"
    FROM oauth_authorization_codes code WHERE code.code_hash = ${hashBearerValue(code)}`);

const tokensOfGrant = (server: OAuthTestServer, grantId: string) =>
  server.db.oneFirst(sql.type(z.object({ count: z.number() }))`
    SELECT ((SELECT count(*) FROM oauth_access_tokens WHERE grant_id = ${grantId}) + (SELECT count(*) FROM oauth_refresh_tokens WHERE grant_id = ${grantId}))::int AS count`);

const codeExchangeFailures = async (server: OAuthTestServer, clientId: string) =>
  (await auditRows(server, 'OAuthCodeExchange')).filter((row) => row.client_id === clientId && row.outcome === 'failure').map((row) => row.details);

describe('Google account linking without PKCE', () => {
  let server: OAuthTestServer;
  let google: Google;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    // The client an operator creates for Google (POST /api/v1/admin/oauth/voice-clients): confidential, client_secret_post.
    const metadata = voiceClientMetadata({ platform: 'google', projectId: PROJECT_ID, scopes: SCOPE.split(' ') }, { alexaVendorId: undefined, googleProjectId: undefined });
    const created = await server.createClient({ ...metadata, registeredBy: 'admin' });
    google = { client: created.client, clientSecret: created.clientSecret! };
  });
  afterAll(() => server?.close());

  it('links as Google does: authorize without a challenge, login, consent naming Google, the code exchanged without a verifier, then refreshes', async () => {
    const user = await server.createUser(`google-${Math.random()}@example.com`);
    const browser = new TestBrowser(server.url);
    const state = 'google-state+/=~._-';
    const { path } = authorizePath({ clientId: google.client.id, redirectUri: GOOGLE_REDIRECT, scope: SCOPE, state, extra: WITHOUT_PKCE });
    expect(path).not.toContain('code_challenge');

    const toLogin = await browser.get(path);
    expect(toLogin.status).toBe(303);
    const returnTo = new URL(toLogin.headers.get('location')!, server.url).searchParams.get('return_to')!;
    const signedIn = await browser.signIn(user.email, user.password, returnTo);
    expect(signedIn.status).toBe(303);
    const consent = await browser.get(signedIn.headers.get('location')!);
    expect(consent.status).toBe(200);
    const page = await consent.text();
    expect(page).toContain('Your account will be linked to Google.');
    expect(page).toContain('By signing in, you are authorizing Google to control your devices.');

    const approved = await browser.submit(page, {}, 'approve');
    expect(approved.status).toBe(303);
    const landed = new URL(approved.headers.get('location')!);
    expect(`${landed.origin}${landed.pathname}`).toBe(GOOGLE_REDIRECT);
    expect(landed.searchParams.get('state')).toBe(state);
    expect(landed.searchParams.get('iss')).toBe(server.url);
    const code = landed.searchParams.get('code')!;
    expect(await storedChallenges(server, code)).toEqual({ codeChallenge: null, requestChallenges: [null, null] });

    const first = tokensOf(await exchange(server, google, code));
    expect(first).toEqual({ token_type: 'Bearer', access_token: expect.any(String), refresh_token: expect.any(String), expires_in: expect.any(Number), scope: SCOPE });
    const grantId = await grantOfRefreshToken(server, first.refresh_token);
    const devices = await server.db.any(sql.type(z.object({ platform: z.string(), status: z.string() }))`
      SELECT platform, status FROM voice_devices WHERE grant_id = ${grantId}`);
    expect(devices).toEqual([{ platform: 'google', status: 'linked' }]);
    expect(await auditRows(server, 'OAuthCodeExchange')).toContainEqual(expect.objectContaining({ client_id: google.client.id, outcome: 'success', user_id: user.id }));

    const second = tokensOf(await asGoogle(server, google, { grant_type: 'refresh_token', refresh_token: first.refresh_token }));
    expect(second.access_token).not.toBe(first.access_token);
    const third = tokensOf(await asGoogle(server, google, { grant_type: 'refresh_token', refresh_token: second.refresh_token }));
    expect(third.access_token).not.toBe(second.access_token);

    // Linking again while the grant lives: the code comes at once, still without PKCE.
    const relinked = await approve(browser, authorizePath({ clientId: google.client.id, redirectUri: GOOGLE_REDIRECT, scope: SCOPE, extra: WITHOUT_PKCE }).path);
    tokensOf(await exchange(server, google, relinked.searchParams.get('code')!));
  });

  it('refuses a code_verifier for a code issued without a challenge (downgrade): invalid_grant, audited, the code burned, nothing issued', async () => {
    const { browser } = await signedInBrowser(server);
    const landed = await approve(browser, authorizePath({ clientId: google.client.id, redirectUri: GOOGLE_REDIRECT, scope: SCOPE, extra: WITHOUT_PKCE }).path);
    const code = landed.searchParams.get('code')!;
    const grantId = await server.db.oneFirst(sql.type(z.object({ grantId: z.string() }))`
      SELECT grant_id AS "grantId" FROM oauth_authorization_codes WHERE code_hash = ${hashBearerValue(code)}`);

    const injected = await exchange(server, google, code, { code_verifier: createPkcePair().verifier });
    expect(injected.status).toBe(400);
    expect(injected.body.error).toBe('invalid_grant');
    expect(await codeExchangeFailures(server, google.client.id)).toContainEqual({ reason: 'pkce_downgrade' });
    expect((await exchange(server, google, code)).body.error).toBe('invalid_grant');
    expect(await tokensOfGrant(server, grantId)).toBe(0);
  });

  it('enforces the PKCE a Google client does send: the verifier is required and must match; plain or a lone method is refused', async () => {
    const { browser } = await signedInBrowser(server);
    const codeWithChallenge = async () => {
      const { path, pkce } = authorizePath({ clientId: google.client.id, redirectUri: GOOGLE_REDIRECT, scope: SCOPE });
      return { code: (await approve(browser, path)).searchParams.get('code')!, pkce };
    };

    const withoutVerifier = await exchange(server, google, (await codeWithChallenge()).code);
    expect(withoutVerifier.status).toBe(400);
    expect(withoutVerifier.body.error).toBe('invalid_grant');
    expect(await codeExchangeFailures(server, google.client.id)).toContainEqual({ reason: 'pkce_missing' });

    const wrongVerifier = await exchange(server, google, (await codeWithChallenge()).code, { code_verifier: createPkcePair().verifier });
    expect(wrongVerifier.body.error).toBe('invalid_grant');
    expect(await codeExchangeFailures(server, google.client.id)).toContainEqual({ reason: 'pkce_mismatch' });

    const right = await codeWithChallenge();
    expect(await storedChallenges(server, right.code)).toMatchObject({ codeChallenge: right.pkce.challenge });
    tokensOf(await exchange(server, google, right.code, { code_verifier: right.pkce.verifier }));

    for (const [extra, reason] of [
      [{ code_challenge_method: 'plain' }, 'pkce_plain'],
      [{ code_challenge: undefined, code_challenge_method: 'S256' }, 'pkce_missing'],
      [{ code_challenge: undefined, code_challenge_method: 'plain' }, 'pkce_missing'],
    ] as const) {
      const refused = await approve(browser, authorizePath({ clientId: google.client.id, redirectUri: GOOGLE_REDIRECT, scope: SCOPE, extra }).path);
      expect(refused.searchParams.get('error')).toBe('invalid_request');
      expect(refused.searchParams.get('code')).toBeNull();
      const rejections = (await auditRows(server, 'OAuthAuthorizeRejected')).filter((row) => row.client_id === google.client.id);
      expect(rejections.at(-1)?.details).toEqual({ reason });
    }
  });
});

describe('every other client still sends PKCE', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer();
  });
  afterAll(() => server?.close());

  it.each([
    ['an Alexa client', { kind: 'voice' as const, voicePlatform: 'alexa' as const, redirectUris: [ALEXA_REDIRECT] }],
    ['a voice client of no platform', { kind: 'voice' as const, voicePlatform: null, redirectUris: [ALEXA_REDIRECT] }],
    ['a confidential third-party client', {}],
    ['a public client', { tokenEndpointAuthMethod: 'none' as const }],
    ['a public client registered as Google', { kind: 'voice' as const, voicePlatform: 'google' as const, tokenEndpointAuthMethod: 'none' as const, redirectUris: [GOOGLE_REDIRECT] }],
  ])('%s without a challenge is refused at authorize (invalid_request, audited pkce_missing)', async (_label, options) => {
    const { client } = await server.createClient({ ...options, scopes: SCOPE.split(' ') });
    const redirectUri = client.redirectUris[0]!;
    const { browser, user } = await signedInBrowser(server);
    // A grant the user already gave does not let the client skip PKCE either.
    await upsertGrant(server.db, user.id, client.id, SCOPE.split(' '));
    const refused = await approve(browser, authorizePath({ clientId: client.id, redirectUri, scope: SCOPE, extra: WITHOUT_PKCE }).path);
    expect(`${refused.origin}${refused.pathname}`).toBe(redirectUri);
    expect(refused.searchParams.get('error')).toBe('invalid_request');
    expect(refused.searchParams.get('code')).toBeNull();
    const rejections = (await auditRows(server, 'OAuthAuthorizeRejected')).filter((row) => row.client_id === client.id);
    expect(rejections.map((row) => row.details)).toEqual([{ reason: 'pkce_missing' }]);
  });
});
