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
});
