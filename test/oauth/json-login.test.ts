import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';

/** The API consumers' login: JSON only, no 500 for hostile input, no password in the audit log. */
describe('JSON login (/api/v1/auth/login)', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    await server.createUser('erin@example.com');
  });

  afterAll(async () => {
    await server?.close();
  });

  const login = (body: string, contentType: string) =>
    fetch(`${server.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': contentType }, body });

  it('refuses a form-encoded login, which any site could post (login CSRF)', async () => {
    const response = await login('email=erin%40example.com&password=correct+horse+battery+staple', 'application/x-www-form-urlencoded');
    expect(response.status).toBe(415);
    expect(await response.json()).toMatchObject({ error: 'unsupported_media_type' });
    expect(response.headers.get('set-cookie')).toBeNull();
  });

  it('answers 400, not 500, to an email holding a NUL character', async () => {
    const response = await login(JSON.stringify({ email: 'erin\u0000@example.com', password: 'x' }), 'application/json');
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: 'invalid_request' });
  });

  it('does not write a mistyped password into the audit log', async () => {
    const typedIntoEmailField = 'my secret passphrase';
    const response = await login(JSON.stringify({ email: typedIntoEmailField, password: 'x' }), 'application/json');
    expect(response.status).toBe(401);
    const details = await server.db.anyFirst(sql.type(z.object({ details: z.string() }))`
      SELECT details::text AS details FROM audit_log WHERE action = 'UserLoginFailed'`);
    expect(details.length).toBeGreaterThan(0);
    expect(details.join('\n')).not.toContain(typedIntoEmailField);
  });

  it('signs in with JSON', async () => {
    const response = await login(JSON.stringify({ email: 'erin@example.com', password: 'correct horse battery staple' }), 'application/json');
    expect(response.status).toBe(200);
    expect(response.headers.get('set-cookie')).toContain('pm_session=');
  });

  it('revokes the session it is presented with (cookie or Bearer) when it signs in again (session fixation)', async () => {
    const credentials = JSON.stringify({ email: 'erin@example.com', password: 'correct horse battery staple' });
    const signIn = async (headers: Record<string, string> = {}) => {
      const response = await fetch(`${server.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: credentials });
      expect(response.status).toBe(200);
      return ((await response.json()) as { sessionToken: string }).sessionToken;
    };
    const me = async (token: string) => (await fetch(`${server.url}/api/v1/auth/me`, { headers: { authorization: `Bearer ${token}` } })).status;

    const first = await signIn();
    const second = await signIn({ cookie: `pm_session=${first}` });
    expect(await me(first)).toBe(401);
    expect(await me(second)).toBe(200);
    const third = await signIn({ authorization: `Bearer ${second}` });
    expect(await me(second)).toBe(401);
    expect(await me(third)).toBe(200);
  });

  it('a failed login leaves the presented session alone', async () => {
    const signedIn = await login(JSON.stringify({ email: 'erin@example.com', password: 'correct horse battery staple' }), 'application/json');
    const { sessionToken } = (await signedIn.json()) as { sessionToken: string };
    const failed = await fetch(`${server.url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${sessionToken}` },
      body: JSON.stringify({ email: 'erin@example.com', password: 'not the password' }),
    });
    expect(failed.status).toBe(401);
    expect((await fetch(`${server.url}/api/v1/auth/me`, { headers: { authorization: `Bearer ${sessionToken}` } })).status).toBe(200);
  });
});

describe('JSON login rate limit', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer();
  });

  afterAll(async () => {
    await server?.close();
  });

  it('limits POST /api/v1/auth/login to 20 a minute per IP, answering 429 as { error, message }', async () => {
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let attempt = 0; attempt < 21; attempt += 1) {
      last = await fetch(`${server.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: `rate-${attempt}@example.com`, password: 'whatever' }),
      });
      statuses.push(last.status);
    }
    expect(statuses.slice(0, 20).every((status) => status === 401)).toBe(true);
    expect(statuses[20]).toBe(429);
    expect(last!.headers.get('retry-after')).not.toBeNull();
    const body = (await last!.json()) as Record<string, unknown>;
    expect(body).toEqual({ error: 'rate_limited', message: expect.any(String) });
  });
});
