import * as openid from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INITIAL_ACCESS_TOKEN, startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { parseForm, TestBrowser } from '../helpers/oauth-browser';
import { sessionRevoked } from '../helpers/sso-pm';
import { browserSession } from './oidc-helpers';

const REDIRECT_URI = 'https://rp.example/callback';
const POST_LOGOUT_REDIRECT_URI = 'https://rp.example/signed-out';

/**
 * An outside relying party, openid-client 6.9.1, configured only from our discovery document (and a
 * client it registered itself): it signs a user in through the real login and consent pages, validates
 * the id_token (signature, issuer, audience, nonce, PKCE, state and `iss` of the response), calls
 * userinfo, refreshes, and logs out through the end_session_endpoint. Afterwards the PM session is dead
 * and a silent sign-in (prompt=none) answers login_required.
 */
describe('interoperability with openid-client', () => {
  let server: OAuthTestServer;
  let config: openid.Configuration;
  let user: { id: string; email: string; password: string };
  const browser = () => new TestBrowser(server.url);

  beforeAll(async () => {
    server = await startOAuthTestServer();
    user = await server.createUser('openid-interop@example.com');
    const registration = await fetch(`${server.url}/oauth/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${INITIAL_ACCESS_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'Outside RP',
        redirect_uris: [REDIRECT_URI],
        post_logout_redirect_uris: [POST_LOGOUT_REDIRECT_URI],
        grant_types: ['authorization_code', 'refresh_token'],
        scope: 'openid profile email',
      }),
    });
    expect(registration.status).toBe(201);
    const { client_id: clientId, client_secret: clientSecret } = (await registration.json()) as { client_id: string; client_secret: string };
    config = await openid.discovery(new URL(server.url), clientId, undefined, openid.ClientSecretBasic(clientSecret), { execute: [openid.allowInsecureRequests] });
  });
  afterAll(() => server?.close());

  /** Navigates to a URL on our server; the browser keeps cookies and never follows redirects by itself. */
  const path = (url: URL) => `${url.pathname}${url.search}`;

  it('signs in, validates the id_token, reads userinfo, refreshes and logs out', async () => {
    expect(config.serverMetadata()).toMatchObject({ issuer: server.url, end_session_endpoint: `${server.url}/oauth/logout` });
    const codeVerifier = openid.randomPKCECodeVerifier();
    const nonce = openid.randomNonce();
    const state = openid.randomState();
    const authorizationUrl = openid.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid profile email',
      code_challenge: await openid.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      nonce,
      state,
    });

    // The browser: authorize, the login page, the consent page (a self-registered client always asks), back to the RP.
    const pm = browser();
    let response = await pm.get(path(authorizationUrl));
    const loginPage = await (await pm.get(response.headers.get('location')!)).text();
    response = await pm.submit(loginPage, { email: user.email, password: user.password });
    response = await pm.get(response.headers.get('location')!);
    expect(response.status).toBe(200);
    const consentPage = await response.text();
    expect(consentPage).toContain('Outside RP');
    expect(parseForm(consentPage).buttons.map((button) => button.value)).toContain('approve');
    response = await pm.submit(consentPage, {}, 'approve');
    expect(response.status).toBe(303);
    const callback = new URL(response.headers.get('location')!);

    const tokens = await openid.authorizationCodeGrant(config, callback, { pkceCodeVerifier: codeVerifier, expectedNonce: nonce, expectedState: state, idTokenExpected: true });
    const session = await browserSession(server, pm);
    const claims = tokens.claims()!;
    expect(claims).toMatchObject({ iss: server.url, sub: user.id, aud: config.clientMetadata().client_id, nonce, sid: session.id, auth_time: session.authTime });

    const userinfo = await openid.fetchUserInfo(config, tokens.access_token, claims.sub);
    expect(userinfo).toEqual({ sub: user.id, name: 'openid-interop', email: user.email, email_verified: false });

    const refreshed = await openid.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.claims()).toMatchObject({ sub: user.id, sid: session.id });
    expect(refreshed.claims()).not.toHaveProperty('nonce');

    const endSessionUrl = openid.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_REDIRECT_URI, state: 'logout-state' });
    response = await pm.get(path(endSessionUrl));
    expect(response.status).toBe(303);
    const landed = new URL(response.headers.get('location')!);
    expect(`${landed.origin}${landed.pathname}`).toBe(POST_LOGOUT_REDIRECT_URI);
    expect(landed.searchParams.get('state')).toBe('logout-state');
    expect(await sessionRevoked(server, session.id)).toEqual({ revoked: true, reason: 'rp_logout' });

    // Signed out: a silent sign-in comes back with login_required, which the library reports as such.
    const silentState = openid.randomState();
    const silent = openid.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid',
      code_challenge: await openid.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      prompt: 'none',
      state: silentState,
    });
    response = await pm.get(path(silent));
    await expect(
      openid.authorizationCodeGrant(config, new URL(response.headers.get('location')!), { pkceCodeVerifier: codeVerifier, expectedState: silentState }),
    ).rejects.toMatchObject({ error: 'login_required' });
  });
});
