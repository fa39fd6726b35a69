import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, INITIAL_ACCESS_TOKEN, startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { authorizePath, TestBrowser } from '../helpers/oauth-browser';
import { auditRows, basicAuth, issueCode, postAsClient, postForm, type TestClient } from './token-helpers';

const ENDPOINTS = ['/oauth/token', '/oauth/introspect', '/oauth/revoke'] as const;
const ADMIN_PATH = '/api/v1/admin/oauth/clients';

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

/**
 * The never-500 matrix for the browser and management endpoints: NUL bytes (PostgreSQL text cannot
 * hold them), oversize values, repeated (array-valued) parameters and garbage bodies.
 */
describe('no 500 from authorize, decision, admin clients, registration or grants', () => {
  let server: OAuthTestServer;
  let clientId: string;
  let cookie: string;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    clientId = (await server.createClient()).client.id;
    const user = await server.createUser('never-500@example.com');
    const browser = new TestBrowser(server.url);
    expect((await browser.signIn(user.email, user.password)).status).toBe(303);
    cookie = [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  });
  afterAll(() => server?.close());

  const big = 'x'.repeat(10_000);
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const json = { 'content-type': 'application/json' };
  const admin = () => ({ authorization: `Bearer ${ADMIN_TOKEN}` });
  const iat = () => ({ authorization: `Bearer ${INITIAL_ACCESS_TOKEN}` });

  type Case = [string, () => { path: string; init?: RequestInit }];
  const authorize = (query: string) => () => ({ path: `/oauth/authorize?${query}`, init: { headers: { cookie } } });
  const valid = () => authorizePath({ clientId }).path.split('?')[1]!;
  const decision = (body: string, headers: Record<string, string> = form) => () => ({
    path: '/oauth/authorize/decision',
    init: { method: 'POST', headers: { cookie, ...headers }, body },
  });
  const adminCall = (method: string, path: string, body?: unknown) => () => ({
    path: `${ADMIN_PATH}${path}`,
    init: { method, headers: { ...admin(), ...(body === undefined ? {} : json) }, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) },
  });
  const registration = (body: string) => () => ({ path: '/oauth/register', init: { method: 'POST', headers: { ...iat(), ...json }, body } });
  const grants = (method: string, path: string) => () => ({ path: `/oauth/grants${path}`, init: { method, headers: { cookie } } });

  const htmlCases: Case[] = [
    ['authorize: NUL client_id', authorize('client_id=%00')],
    ['authorize: NUL client_id, anonymous', () => ({ path: '/oauth/authorize?client_id=%00' })],
    ['authorize: NUL state on the consent path', () => authorize(valid().replace(/state=[^&]*/, 'state=a%00b'))()],
    ['authorize: NUL in every parameter', authorize('response_type=%00&client_id=%00&redirect_uri=%00&scope=%00&state=%00&code_challenge=%00&code_challenge_method=%00')],
    ['authorize: oversize client_id', authorize(`client_id=${big}`)],
    ['authorize: oversize state', () => authorize(valid().replace(/state=[^&]*/, `state=${big}`))()],
    ['authorize: repeated client_id', () => authorize(`client_id=${clientId}&client_id=${clientId}`)()],
    ['authorize: bracket parameters', authorize('client_id[]=x&state[a]=b&__proto__=x&constructor=y')],
    ['authorize: broken percent-encoding', authorize('client_id=%E0%A4%A&state=%FF%FE')],
    ['authorize: NUL resume', authorize('resume=%00')],
    ['authorize: garbage resume', authorize(`resume=${encodeURIComponent("'; DROP TABLE x; --")}`)],
    ['authorize: oversize resume', authorize(`resume=${big}`)],
    ['authorize: repeated resume', authorize('resume=a&resume=b')],
    ['decision: NUL request_id', decision('request_id=%00&csrf_token=x&decision=approve')],
    ['decision: NUL csrf_token', decision('request_id=00000000-0000-4000-8000-000000000000&csrf_token=%00&decision=approve')],
    ['decision: NUL decision', decision('request_id=00000000-0000-4000-8000-000000000000&csrf_token=x&decision=%00')],
    ['decision: oversize values', decision(`request_id=${big}&csrf_token=${big}&decision=${big}`)],
    ['decision: repeated request_id', decision('request_id=a&request_id=b&csrf_token=x&decision=approve')],
    ['decision: bracket parameters', decision('request_id[]=a&csrf_token[x]=y&__proto__=z')],
    ['decision: broken percent-encoding', decision('request_id=%E0%A4%A&csrf_token=%FF')],
    ['decision: JSON body', decision(JSON.stringify({ request_id: ['a'], csrf_token: { a: 1 } }), json)],
    ['decision: malformed JSON', decision('{"request_id":', json)],
    ['decision: text/plain body', decision('request_id=x', { 'content-type': 'text/plain' })],
    ['decision: empty body', decision('')],
  ];

  const jsonCases: Case[] = [
    ['admin: GET a NUL id', adminCall('GET', '/%00')],
    ['admin: GET an oversize id', adminCall('GET', `/${big}`)],
    ['admin: GET a garbage id', adminCall('GET', `/${encodeURIComponent("%FF'\";--")}`)],
    ['admin: PUT redirect URIs of a NUL id', adminCall('PUT', '/%00/redirect-uris', { redirect_uris: ['https://client.example/callback'] })],
    ['admin: PUT NUL redirect URIs', () => adminCall('PUT', `/${clientId}/redirect-uris`, { redirect_uris: ['https://client.example/\u0000'] })()],
    ['admin: PUT an object for the list', () => adminCall('PUT', `/${clientId}/redirect-uris`, { redirect_uris: { a: 1 } })()],
    ['admin: rotate the secret of a NUL id', adminCall('POST', '/%00/secret')],
    ['admin: revoke a NUL id', adminCall('DELETE', '/%00')],
    ['admin: create with a NUL name', adminCall('POST', '', { name: 'a\u0000b', grant_types: ['authorization_code'], scopes: ['properties:read'], token_endpoint_auth_method: 'client_secret_basic', redirect_uris: ['https://a.example/cb'] })],
    ['admin: create with NUL scopes and grant types', adminCall('POST', '', { name: 'x', grant_types: ['\u0000'], scopes: ['\u0000'], token_endpoint_auth_method: 'client_secret_basic' })],
    ['admin: create with an oversize name', adminCall('POST', '', { name: big, grant_types: ['authorization_code'], scopes: ['properties:read'], token_endpoint_auth_method: 'client_secret_basic' })],
    ['admin: create with arrays for strings', adminCall('POST', '', { name: ['a'], grant_types: [['x']], scopes: [{}], token_endpoint_auth_method: ['none'] })],
    ['admin: create with garbage JSON', adminCall('POST', '', '{"name": [')],
    ['registration: NUL client_name', registration(JSON.stringify({ client_name: 'a\u0000b', redirect_uris: ['https://a.example/cb'] }))],
    ['registration: NUL scope and auth method', registration(JSON.stringify({ scope: '\u0000', token_endpoint_auth_method: '\u0000', redirect_uris: ['https://a.example/cb'] }))],
    ['registration: NUL redirect URI and grant type', registration(JSON.stringify({ redirect_uris: ['https://a.example/\u0000'], grant_types: ['\u0000'] }))],
    ['registration: oversize client_name', registration(JSON.stringify({ client_name: big, redirect_uris: ['https://a.example/cb'] }))],
    ['registration: arrays for strings', registration(JSON.stringify({ client_name: ['a'], scope: ['b'], redirect_uris: [['c']] }))],
    ['registration: garbage JSON', registration('{"client_name":')],
    ['registration: not an object', registration('[1, "\\u0000"]')],
    ['grants: list with garbage query', grants('GET', '?x=%00&y[]=z')],
    ['grants: DELETE a NUL id', grants('DELETE', '/%00')],
    ['grants: DELETE an oversize id', grants('DELETE', `/${big}`)],
    ['grants: DELETE a garbage id', grants('DELETE', `/${encodeURIComponent("%FF'\";--")}`)],
  ];

  it.each(htmlCases)('%s: an HTML error page, never 500', async (_name, build) => {
    const { path, init } = build();
    const response = await fetch(`${server.url}${path}`, { redirect: 'manual', ...init });
    const text = await response.text();
    expect(response.status, text).toBeGreaterThanOrEqual(400);
    expect(response.status, text).toBeLessThan(500);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(response.headers.get('x-frame-options')).toBe('DENY');
    expect(text).not.toContain('[object Object]');
  });

  it.each(jsonCases)('%s: a JSON error, never 500', async (name, build) => {
    const { path, init } = build();
    const response = await fetch(`${server.url}${path}`, { redirect: 'manual', ...init });
    const text = await response.text();
    expect(response.status, text).not.toBe(500);
    // Listing one's grants has no parameters: a stray query is ignored.
    if (name.startsWith('grants: list')) return expect(response.status, text).toBe(200);
    expect(response.status, text).toBeGreaterThanOrEqual(400);
    expect(response.status, text).toBeLessThan(500);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect((JSON.parse(text) as { error?: unknown }).error).toEqual(expect.any(String));
  });
});
