import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows, basicAuth, issueCode, postAsClient, postForm, type TestClient } from './token-helpers';

const ENDPOINTS = ['/oauth/token', '/oauth/introspect', '/oauth/revoke'] as const;

describe('RFC 6749 error answers', () => {
  let server: OAuthTestServer;
  let client: TestClient;
  let userId: string;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    client = await server.createClient();
    userId = (await server.createUser('errors@example.com')).id;
  });
  afterAll(() => server?.close());

  const expectOAuthError = (response: Awaited<ReturnType<typeof postForm>>, status: number, error: string) => {
    expect(response.status, response.text).toBe(status);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(Object.keys(response.body).sort()).toEqual(['error', 'error_description']);
    expect(response.body.error).toBe(error);
    expect(typeof response.body.error_description).toBe('string');
  };

  it('invalid_request: missing grant_type', async () => {
    expectOAuthError(await postAsClient(server, '/oauth/token', client, {}), 400, 'invalid_request');
  });

  it('invalid_client: 401 with WWW-Authenticate, audited with client id and address, never the secret', async () => {
    const response = await postForm(server, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basicAuth(client.client.id, 'wrong-secret-value') });
    expectOAuthError(response, 401, 'invalid_client');
    expect(response.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    const audited = await auditRows(server, 'OAuthClientAuthFailed');
    expect(audited).toContainEqual(expect.objectContaining({ outcome: 'failure', client_id: client.client.id, ip_address: '127.0.0.1' }));
    expect(JSON.stringify(audited)).not.toContain('wrong-secret-value');

    for (const parameters of [{ grant_type: 'client_credentials' }, { grant_type: 'client_credentials', client_id: 'c_unknown' }] as Array<Record<string, string>>) {
      const unknown = await postForm(server, '/oauth/token', parameters);
      expectOAuthError(unknown, 401, 'invalid_client');
      expect(unknown.headers.get('www-authenticate')).toMatch(/^Basic /);
    }
    // A confidential client that tries the wrong method is refused too.
    const wrongMethod = await postForm(server, '/oauth/token', { grant_type: 'client_credentials', client_id: client.client.id, client_secret: client.clientSecret! });
    expectOAuthError(wrongMethod, 401, 'invalid_client');
  });

  it('invalid_request: two client authentication methods at once', async () => {
    const response = await postForm(
      server,
      '/oauth/token',
      { grant_type: 'client_credentials', client_secret: client.clientSecret! },
      { authorization: basicAuth(client.client.id, client.clientSecret!) },
    );
    expectOAuthError(response, 400, 'invalid_request');
  });

  it('invalid_grant: an unknown code', async () => {
    const response = await postAsClient(server, '/oauth/token', client, {
      grant_type: 'authorization_code',
      code: 'nope',
      redirect_uri: 'https://client.example/callback',
      code_verifier: 'v'.repeat(43),
    });
    expectOAuthError(response, 400, 'invalid_grant');
  });

  it('unauthorized_client: a grant type the client is not registered for', async () => {
    expectOAuthError(await postAsClient(server, '/oauth/token', client, { grant_type: 'client_credentials' }), 400, 'unauthorized_client');
  });

  it.each(['password', 'implicit', 'token', 'urn:ietf:params:oauth:grant-type:device_code', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'nonsense'])(
    'unsupported_grant_type: %s',
    async (grantType) => {
      const parameters: Record<string, string> = grantType === 'password' ? { grant_type: grantType, username: 'a@example.com', password: 'x' } : { grant_type: grantType };
      expectOAuthError(await postAsClient(server, '/oauth/token', client, parameters), 400, 'unsupported_grant_type');
    },
  );

  it('invalid_scope: a scope the client may not have', async () => {
    const service = await server.createClient({ grantTypes: ['client_credentials'], kind: 'service', scopes: ['properties:read'] });
    expectOAuthError(await postAsClient(server, '/oauth/token', service, { grant_type: 'client_credentials', scope: 'properties:write' }), 400, 'invalid_scope');
    expectOAuthError(await postAsClient(server, '/oauth/token', service, { grant_type: 'client_credentials', scope: 'bad"scope' }), 400, 'invalid_scope');
  });

  it('a rejected request changes nothing: the code survives a request with a duplicated parameter', async () => {
    const issued = await issueCode(server, client, userId);
    const body = new URLSearchParams({ grant_type: 'authorization_code', code: issued.code, redirect_uri: issued.redirectUri, code_verifier: issued.verifier });
    body.append('code', issued.code);
    expectOAuthError(await postForm(server, '/oauth/token', body, { authorization: basicAuth(client.client.id, client.clientSecret!) }), 400, 'invalid_request');
    const good = await postAsClient(server, '/oauth/token', client, {
      grant_type: 'authorization_code',
      code: issued.code,
      redirect_uri: issued.redirectUri,
      code_verifier: issued.verifier,
    });
    expect(good.status).toBe(200);
  });

  const auth = () => ({ authorization: basicAuth(client.client.id, client.clientSecret!) });
  const malformed: Array<[string, () => RequestInit]> = [
    ['empty body', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth() }, body: '' })],
    ['no body, no content type', () => ({ method: 'POST', headers: auth() })],
    ['JSON body', () => ({ method: 'POST', headers: { 'content-type': 'application/json', ...auth() }, body: JSON.stringify({ grant_type: 'client_credentials', token: 'x' }) })],
    ['malformed JSON', () => ({ method: 'POST', headers: { 'content-type': 'application/json', ...auth() }, body: '{"grant_type":' })],
    ['text/plain body', () => ({ method: 'POST', headers: { 'content-type': 'text/plain', ...auth() }, body: 'grant_type=client_credentials' })],
    ['multipart body', () => ({ method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=x', ...auth() }, body: '--x--' })],
    ['duplicate grant_type', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth() }, body: 'grant_type=refresh_token&grant_type=refresh_token&token=a&token=b' })],
    ['huge value', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth() }, body: `grant_type=refresh_token&refresh_token=${'a'.repeat(20_000)}&token=${'a'.repeat(20_000)}` })],
    ['body over the limit', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth() }, body: `token=${'a'.repeat(200_000)}` })],
    ['broken percent-encoding', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth() }, body: 'grant_type=%E0%A4%A&token=%FF%FE' })],
    ['bracket parameter names', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth() }, body: 'grant_type[]=x&token[a]=b&__proto__=x&constructor=y' })],
    ['Basic header garbage', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic !!!not-base64***' }, body: 'grant_type=client_credentials&token=x' })],
    ['Basic header without colon', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('nocolon').toString('base64')}` }, body: 'grant_type=client_credentials&token=x' })],
    ['Basic header with bad percent-encoding', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('%E0%A4%A:%%').toString('base64')}` }, body: 'grant_type=client_credentials&token=x' })],
    ['empty Basic header', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' }, body: 'grant_type=client_credentials&token=x' })],
    ['Bearer instead of Basic', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Bearer abc' }, body: 'grant_type=client_credentials&token=x' })],
    ['huge client_id', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=client_credentials&token=x&client_id=${'c'.repeat(10_000)}` })],
    ['NUL bytes', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth() }, body: 'grant_type=refresh_token&refresh_token=%00%00&token=%00' })],
    ['NUL in the Basic client id', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('a\u0000b:secret').toString('base64')}` }, body: 'grant_type=client_credentials&token=x' })],
    ['NUL in client_id', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&token=x&client_id=%00abc' })],
    ['control characters in the code', () => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth() }, body: 'grant_type=authorization_code&code=%01%02&redirect_uri=%00&code_verifier=%FF' })],
  ];

  for (const endpoint of ENDPOINTS) {
    it.each(malformed)(`${endpoint}: %s is answered in RFC 6749 form, never 500`, async (_name, request) => {
      const response = await fetch(`${server.url}${endpoint}`, request());
      const text = await response.text();
      expect(response.status, text).not.toBe(500);
      if (response.status === 200) {
        // Introspection and revocation of a token that is merely garbage is a valid request with a negative answer.
        expect(endpoint).not.toBe('/oauth/token');
        expect(text === '' || text === '{"active":false}', text).toBe(true);
        return;
      }
      expect(response.status, text).toBeGreaterThanOrEqual(400);
      expect(response.status, text).toBeLessThan(500);
      const body = JSON.parse(text) as Record<string, unknown>;
      expect(['invalid_request', 'invalid_client', 'invalid_grant', 'unsupported_grant_type', 'invalid_scope']).toContain(body.error);
      if (response.status === 401) expect(response.headers.get('www-authenticate')).toMatch(/^Basic /);
    });
  }

  it('JSON is refused even when it is otherwise a valid request', async () => {
    const response = await fetch(`${server.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth() },
      body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: 'x' }),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: 'invalid_request' });
  });

  it('GET on the token endpoint is not a token request', async () => {
    const response = await fetch(`${server.url}/oauth/token?grant_type=client_credentials`, { headers: auth() });
    expect(response.status).toBe(404);
  });

  it('rate-limits the token endpoint per client and address', async () => {
    const limited = await startOAuthTestServer();
    try {
      const noisy = await limited.createClient({ name: 'Noisy' });
      const quiet = await limited.createClient({ name: 'Quiet' });
      let last: Awaited<ReturnType<typeof postForm>> | undefined;
      for (let attempt = 0; attempt < 301; attempt += 1) {
        last = await postAsClient(limited, '/oauth/token', noisy, { grant_type: 'nonsense' });
      }
      expect(last!.status).toBe(429);
      expect(last!.body.error).toBe('temporarily_unavailable');
      expect(last!.headers.get('retry-after')).not.toBeNull();
      expect((await postAsClient(limited, '/oauth/token', quiet, { grant_type: 'nonsense' })).status).toBe(400);
    } finally {
      await limited.close();
    }
  });
});
