import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';

/**
 * The account-linking manifests an operator pastes into the Alexa and Google consoles: generated from
 * configuration (issuer, access-token lifetime) and the voice client, exactly in the consoles' shape,
 * with no secret in them.
 */

const ISSUER = 'https://login.pm.example';
const VOICE_PATH = '/api/v1/admin/oauth/voice-clients';

interface Created {
  client_id: string;
  client_secret: string;
  redirect_uris: string[];
  scopes: string[];
}

describe('account-linking manifests', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer({ OAUTH_ISSUER: ISSUER, ACCESS_TOKEN_TTL_SECONDS: '600', ALEXA_VENDOR_ID: 'M2MANIFEST', GOOGLE_HOME_PROJECT_ID: 'pm-manifest' });
  });
  afterAll(() => server?.close());

  async function get(path: string, token: string | null = ADMIN_TOKEN) {
    const response = await fetch(`${server.url}${path}`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
    const text = await response.text();
    return { status: response.status, headers: response.headers, text, body: JSON.parse(text) as Record<string, unknown> };
  }

  async function createVoiceClient(body: Record<string, unknown>): Promise<Created> {
    const response = await fetch(`${server.url}${VOICE_PATH}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(response.status).toBe(201);
    return (await response.json()) as Created;
  }

  function expectNoSecret(text: string, client: Created) {
    expect(text).not.toContain(client.client_secret);
    expect(text).not.toContain(ADMIN_TOKEN);
    expect(text).not.toMatch(/"clientSecret"|"client_secret"/);
  }

  it("answers the Alexa skill manifest's accountLinkingRequest for an HTTP Basic client, without the secret", async () => {
    const client = await createVoiceClient({ platform: 'alexa' });
    const answer = await get(`${VOICE_PATH}/${client.client_id}/alexa-account-linking`);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('cache-control')).toBe('no-store');
    expect(answer.body).toEqual({
      accountLinkingRequest: {
        type: 'AUTH_CODE',
        authorizationUrl: `${ISSUER}/oauth/authorize`,
        accessTokenUrl: `${ISSUER}/oauth/token`,
        clientId: client.client_id,
        accessTokenScheme: 'HTTP_BASIC',
        scopes: ['devices:control', 'properties:read', 'reservations:read'],
        domains: ['login.pm.example', '127.0.0.1'],
        defaultTokenExpirationInSeconds: 600,
        redirectUrls: [
          'https://pitangui.amazon.com/api/skill/link/M2MANIFEST',
          'https://layla.amazon.com/api/skill/link/M2MANIFEST',
          'https://alexa.amazon.co.jp/api/skill/link/M2MANIFEST',
        ],
        skipOnEnablement: false,
      },
      notes: [expect.stringContaining('accountLinkingRequest.clientSecret is not included: paste the client secret shown once')],
    });
    expectNoSecret(answer.text, client);
  });

  it('names REQUEST_BODY_CREDENTIALS for an Alexa client that sends its credentials in the body', async () => {
    const client = await createVoiceClient({ platform: 'alexa', token_endpoint_auth_method: 'client_secret_post', scopes: ['reservations:read'] });
    const answer = await get(`${VOICE_PATH}/${client.client_id}/alexa-account-linking`);
    expect(answer.body.accountLinkingRequest).toMatchObject({ accessTokenScheme: 'REQUEST_BODY_CREDENTIALS', scopes: ['reservations:read'] });
    expectNoSecret(answer.text, client);
  });

  it('answers the Google account-linking settings: client id, endpoints, scopes, credentials in the body, without the secret', async () => {
    const client = await createVoiceClient({ platform: 'google' });
    const answer = await get(`${VOICE_PATH}/${client.client_id}/google-account-linking`);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      accountLinking: {
        enableAccountCreation: false,
        linkingType: 'OAUTH',
        authGrantType: 'AUTH_CODE',
        appClientId: client.client_id,
        authorizationUrl: `${ISSUER}/oauth/authorize`,
        tokenUrl: `${ISSUER}/oauth/token`,
        scopes: ['devices:control', 'properties:read', 'reservations:read'],
        useBasicAuthHeader: false,
      },
      redirectUris: ['https://oauth-redirect.googleusercontent.com/r/pm-manifest', 'https://oauth-redirect-sandbox.googleusercontent.com/r/pm-manifest'],
      notes: [expect.stringContaining('The client secret is not included'), expect.stringContaining('client_secret_post')],
    });
    expectNoSecret(answer.text, client);
  });

  it('refuses clients that have no such manifest, unknown clients, and callers without the admin token', async () => {
    const alexa = await createVoiceClient({ platform: 'alexa' });
    const google = await createVoiceClient({ platform: 'google' });
    const dashboard = await server.createClient({ name: 'Dashboard' });

    const wrongPlatform = await get(`${VOICE_PATH}/${google.client_id}/alexa-account-linking`);
    expect(wrongPlatform.status).toBe(409);
    expect(wrongPlatform.body).toMatchObject({ error: 'wrong_platform', message: expect.stringContaining('google-account-linking') });
    expect((await get(`${VOICE_PATH}/${alexa.client_id}/google-account-linking`)).body).toMatchObject({ error: 'wrong_platform' });
    expect((await get(`${VOICE_PATH}/${dashboard.client.id}/alexa-account-linking`)).body).toMatchObject({ error: 'not_a_voice_client' });
    const unknown = await get(`${VOICE_PATH}/c_nope/alexa-account-linking`);
    expect(unknown.status).toBe(404);

    const revoke = await fetch(`${server.url}/api/v1/admin/oauth/clients/${alexa.client_id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(revoke.status).toBe(200);
    const revoked = await get(`${VOICE_PATH}/${alexa.client_id}/alexa-account-linking`);
    expect(revoked.status).toBe(409);
    expect(revoked.body).toMatchObject({ error: 'revoked' });

    const anonymous = await get(`${VOICE_PATH}/${google.client_id}/google-account-linking`, null);
    expect(anonymous.status).toBe(401);
    expect(anonymous.text).not.toContain(google.client_id);
    expect((await get(`${VOICE_PATH}/${google.client_id}/google-account-linking`, 'not-the-admin-token')).status).toBe(401);
  });
});
