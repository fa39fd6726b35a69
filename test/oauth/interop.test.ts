import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { parseForm, TestBrowser } from '../helpers/oauth-browser';
import type { TestClient } from './token-helpers';

/**
 * oauth4webapi, an independent and strict client library, against our server: discovery,
 * authorization code + PKCE through the real authorize, login and consent pages (the consent form is
 * parsed and submitted as a browser would), refresh, introspection, revocation, client credentials,
 * and RFC 9068 access-token validation as a resource server would do it.
 */
describe('interoperability with oauth4webapi', () => {
  let server: OAuthTestServer;
  let registered: TestClient;
  let user: { id: string; email: string; password: string };
  let as: oauth.AuthorizationServer;
  let client: oauth.Client;
  let clientAuth: oauth.ClientAuth;
  const insecure = { [oauth.allowInsecureRequests]: true } as const;
  const redirectUri = 'https://client.example/callback';

  beforeAll(async () => {
    server = await startOAuthTestServer();
    registered = await server.createClient({ name: 'Interop app', redirectUris: [redirectUri] });
    user = await server.createUser('interop@example.com');
    client = { client_id: registered.client.id };
    clientAuth = oauth.ClientSecretBasic(registered.clientSecret!);
  });
  afterAll(() => server?.close());

  /**
   * Drives the real authorize endpoint, login page and consent page; returns the URL the browser lands on.
   * A fresh browser always signs in; the consent page is shown unless the user's grant already covers
   * the request (`consent: false`), and then it must be parsed and submitted, never skipped.
   */
  async function authorizeInBrowser(authorizationUrl: URL, expected: { consent: boolean } = { consent: true }): Promise<URL> {
    const browser = new TestBrowser(server.url);
    const path = `${authorizationUrl.pathname}${authorizationUrl.search}`;
    let response = await browser.get(path);
    expect(response.status).toBe(303);
    expect(new URL(response.headers.get('location')!, server.url).pathname).toBe('/login');
    const loginPage = await (await browser.get(response.headers.get('location')!)).text();
    expect(parseForm(loginPage).fields).toHaveProperty('email');
    response = await browser.submit(loginPage, { email: user.email, password: user.password });
    expect(response.status).toBe(303);
    response = await browser.get(response.headers.get('location')!);
    if (expected.consent) {
      expect(response.status).toBe(200);
      const consentPage = await response.text();
      const form = parseForm(consentPage);
      expect(form.method).toBe('post');
      expect(form.fields).toEqual(expect.objectContaining({ request_id: expect.any(String), csrf_token: expect.any(String) }));
      expect(form.fields.csrf_token!.length).toBeGreaterThan(20);
      expect(form.buttons.map((button) => button.value)).toEqual(expect.arrayContaining(['approve', 'deny']));
      response = await browser.submit(consentPage, {}, 'approve');
    }
    expect(response.status).toBe(303);
    const location = new URL(response.headers.get('location')!);
    expect(location.searchParams.get('code')).toEqual(expect.any(String));
    return location;
  }

  it('discovers the server, completes code + PKCE, refreshes, introspects and revokes', async () => {
    const issuer = new URL(server.url);
    as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }));
    expect(as.issuer).toBe(server.url);
    expect(as.code_challenge_methods_supported).toEqual(['S256']);
    expect(as.authorization_response_iss_parameter_supported).toBe(true);

    const { codeVerifier, state, authorizationUrl } = await authorizationRequest(client.client_id, redirectUri);

    const callback = await authorizeInBrowser(authorizationUrl);
    expect(`${callback.origin}${callback.pathname}`).toBe(redirectUri);
    // Checks state and, since the metadata says so, that `iss` is present and ours (RFC 9207).
    const callbackParameters = oauth.validateAuthResponse(as, client, callback, state);
    expect(callbackParameters.get('iss')).toBe(server.url);

    const tokenResponse = await oauth.processAuthorizationCodeResponse(
      as,
      client,
      await oauth.authorizationCodeGrantRequest(as, client, clientAuth, callbackParameters, redirectUri, codeVerifier, insecure),
    );
    expect(tokenResponse.token_type).toBe('bearer');
    expect(tokenResponse.refresh_token).toEqual(expect.any(String));
    expect(tokenResponse.scope).toBe('properties:read offline_access');

    // A resource server validating the RFC 9068 access token with the published JWKS.
    const claims = await oauth.validateJwtAccessToken(
      as,
      new Request('https://api.example/properties', { headers: { authorization: `Bearer ${tokenResponse.access_token}` } }),
      server.url,
      insecure,
    );
    expect(claims).toMatchObject({ sub: user.id, client_id: client.client_id, scope: 'properties:read offline_access' });

    // The code cannot be redeemed twice.
    await expect(
      oauth.processAuthorizationCodeResponse(
        as,
        client,
        await oauth.authorizationCodeGrantRequest(as, client, clientAuth, callbackParameters, redirectUri, codeVerifier, insecure),
      ),
    ).rejects.toMatchObject({ error: 'invalid_grant' });
    // … and the replay revoked what it issued.
    const afterReplay = await oauth.processIntrospectionResponse(
      as,
      client,
      await oauth.introspectionRequest(as, client, clientAuth, tokenResponse.access_token, insecure),
    );
    expect(afterReplay).toEqual({ active: false });
    // Start again (consent is remembered this time) for the rest of the flow.
    const fresh = await authorizeAgain();

    const refreshed = await oauth.processRefreshTokenResponse(
      as,
      client,
      await oauth.refreshTokenGrantRequest(as, client, clientAuth, fresh.refresh_token!, insecure),
    );
    expect(refreshed.refresh_token).not.toBe(fresh.refresh_token);

    const introspected = await oauth.processIntrospectionResponse(
      as,
      client,
      await oauth.introspectionRequest(as, client, clientAuth, refreshed.access_token, insecure),
    );
    expect(introspected).toMatchObject({ active: true, client_id: client.client_id, sub: user.id, token_type: 'Bearer' });
    const introspectedRefresh = await oauth.processIntrospectionResponse(
      as,
      client,
      await oauth.introspectionRequest(as, client, clientAuth, refreshed.refresh_token!, { ...insecure, additionalParameters: { token_type_hint: 'refresh_token' } }),
    );
    expect(introspectedRefresh).toMatchObject({ active: true, token_type: 'refresh_token' });

    await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, clientAuth, refreshed.refresh_token!, insecure));
    for (const token of [refreshed.access_token, refreshed.refresh_token!]) {
      const after = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, clientAuth, token, insecure));
      expect(after).toEqual({ active: false });
    }
    await expect(
      oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, clientAuth, refreshed.refresh_token!, insecure)),
    ).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  /** What oauth4webapi's documentation has a client build: a fresh verifier and state, and the URL to send the user to. */
  async function authorizationRequest(clientId: string, redirect: string) {
    const codeVerifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const authorizationUrl = new URL(as.authorization_endpoint!);
    authorizationUrl.search = new URLSearchParams({
      client_id: clientId,
      redirect_uri: redirect,
      response_type: 'code',
      scope: 'properties:read offline_access',
      state,
      code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
    }).toString();
    return { codeVerifier, state, authorizationUrl };
  }

  async function authorizeAgain(): Promise<oauth.TokenEndpointResponse> {
    const { codeVerifier, state, authorizationUrl } = await authorizationRequest(client.client_id, redirectUri);
    // The user's grant already covers the request: the code comes without a consent page.
    const callbackParameters = oauth.validateAuthResponse(as, client, await authorizeInBrowser(authorizationUrl, { consent: false }), state);
    return oauth.processAuthorizationCodeResponse(
      as,
      client,
      await oauth.authorizationCodeGrantRequest(as, client, clientAuth, callbackParameters, redirectUri, codeVerifier, insecure),
    );
  }

  it('a public client (no secret) completes code + PKCE and refresh with client_secret none', async () => {
    const native = await server.createClient({ name: 'Native app', tokenEndpointAuthMethod: 'none', redirectUris: ['http://127.0.0.1/callback'] });
    const publicClient: oauth.Client = { client_id: native.client.id };
    const nativeRedirect = 'http://127.0.0.1:53123/callback';
    const { codeVerifier, state, authorizationUrl } = await authorizationRequest(publicClient.client_id, nativeRedirect);
    const callbackParameters = oauth.validateAuthResponse(as, publicClient, await authorizeInBrowser(authorizationUrl), state);
    const tokens = await oauth.processAuthorizationCodeResponse(
      as,
      publicClient,
      await oauth.authorizationCodeGrantRequest(as, publicClient, oauth.None(), callbackParameters, nativeRedirect, codeVerifier, insecure),
    );
    const refreshed = await oauth.processRefreshTokenResponse(
      as,
      publicClient,
      await oauth.refreshTokenGrantRequest(as, publicClient, oauth.None(), tokens.refresh_token!, insecure),
    );
    expect(refreshed.access_token).toEqual(expect.any(String));
    await oauth.processRevocationResponse(await oauth.revocationRequest(as, publicClient, oauth.None(), refreshed.refresh_token!, insecure));
  });

  it('client credentials with client_secret_post', async () => {
    const service = await server.createClient({
      name: 'Service',
      kind: 'service',
      tokenEndpointAuthMethod: 'client_secret_post',
      redirectUris: [],
      grantTypes: ['client_credentials'],
      scopes: ['properties:read'],
    });
    const serviceClient: oauth.Client = { client_id: service.client.id };
    const tokens = await oauth.processClientCredentialsResponse(
      as,
      serviceClient,
      await oauth.clientCredentialsGrantRequest(as, serviceClient, oauth.ClientSecretPost(service.clientSecret!), { scope: 'properties:read' }, insecure),
    );
    expect(tokens.refresh_token).toBeUndefined();
    expect(tokens.scope).toBe('properties:read');
  });
});
