import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, type Config } from '../../platform/config';
import { ensureRealityPortalClient } from '../../platform/sso/portal-client';
import { adminRequest, startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { authorizePath, signedInBrowser } from '../helpers/oauth-browser';
import { auditRows, basicAuth, postForm } from '../oauth/token-helpers';

const PORTAL_URL = 'http://127.0.0.1:39002';
const SECRET = 'portal-secret-for-tests-0123456789abcdef';

/** ensureRealityPortalClient: the Reality Portal's first-party client, made and kept as the configuration says. */
describe('Reality Portal client registration', () => {
  let server: OAuthTestServer;
  beforeAll(async () => {
    server = await startOAuthTestServer({ REALITY_PUBLIC_URL: PORTAL_URL, REALITY_OIDC_CLIENT_SECRET: SECRET });
  });
  afterAll(() => server?.close());

  /** The server's configuration with another portal client id or secret (each test its own client). */
  const configWith = (portal: Partial<Config['sso']['portal']>): Config => ({ ...server.config, sso: { ...server.config.sso, portal: { ...server.config.sso.portal, ...portal } } });
  const ensure = (config: Config) => ensureRealityPortalClient(server.db, server.audit, config);
  const admin = (method: string, path: string, body?: unknown) => adminRequest(server.url, method, `/api/v1/admin/oauth/clients${path}`, body);
  /** Whether the secret authenticates the client (introspection answers 200 only to an authenticated client). */
  const authenticates = async (clientId: string, secret: string) =>
    (await postForm(server, '/oauth/introspect', { token: 'x' }, { authorization: basicAuth(clientId, secret) })).status === 200;

  it('does nothing without REALITY_OIDC_CLIENT_SECRET', async () => {
    const config = configWith({ clientId: 'portal-unset', clientSecret: undefined });
    expect(await ensure(config)).toBe('not_configured');
    expect((await admin('GET', '/portal-unset')).status).toBe(404);
  });

  it('registers the confidential first-party client with the portal URIs, its secret hashed, audited', async () => {
    expect(await ensure(server.config)).toBe('created');
    const view = await (await admin('GET', '/reality-portal')).json();
    expect(view).toMatchObject({
      client_id: 'reality-portal',
      name: 'Reality Portal',
      client_type: 'confidential',
      token_endpoint_auth_method: 'client_secret_basic',
      first_party: true,
      kind: 'third_party',
      registered_by: 'admin',
      redirect_uris: [`${PORTAL_URL}/sso/callback`],
      post_logout_redirect_uris: [`${PORTAL_URL}/`],
      backchannel_logout_uri: `${PORTAL_URL}/sso/backchannel-logout`,
      grant_types: ['authorization_code'],
      scopes: ['openid', 'profile', 'email'],
    });
    expect(await authenticates('reality-portal', SECRET)).toBe(true);
    expect(await authenticates('reality-portal', `${SECRET}x`)).toBe(false);
    const created = (await auditRows(server, 'OAuthClientCreate')).filter((row) => row.client_id === 'reality-portal');
    expect(created).toHaveLength(1);
    expect(JSON.stringify(created)).not.toContain(SECRET);
  });

  it('changes nothing, and audits nothing, when the client is as configured', async () => {
    await ensure(server.config);
    const audited = (await auditRows(server, 'OAuthClientUpdate')).length;
    expect(await ensure(server.config)).toBe('unchanged');
    expect(await auditRows(server, 'OAuthClientUpdate')).toHaveLength(audited);
  });

  it('two processes starting at once make one client', async () => {
    const config = configWith({ clientId: 'portal-race' });
    const outcomes = await Promise.all([ensure(config), ensure(config), ensure(config)]);
    expect(outcomes.sort()).toEqual(['created', 'unchanged', 'unchanged']);
  });

  it('a new secret in the configuration replaces the stored hash', async () => {
    const config = configWith({ clientId: 'portal-rotated' });
    await ensure(config);
    const rotated = configWith({ clientId: 'portal-rotated', clientSecret: `${SECRET}-rotated` });
    expect(await ensure(rotated)).toBe('updated');
    expect(await authenticates('portal-rotated', `${SECRET}-rotated`)).toBe(true);
    expect(await authenticates('portal-rotated', SECRET)).toBe(false);
    expect((await auditRows(server, 'OAuthClientUpdate')).at(-1)).toMatchObject({ client_id: 'portal-rotated', details: { fields: ['client_secret'] } });
  });

  it('puts back what an operator changed, and leaves a revoked client revoked', async () => {
    const config = configWith({ clientId: 'portal-drift' });
    await ensure(config);
    await admin('PUT', '/portal-drift/redirect-uris', { redirect_uris: ['https://elsewhere.example/cb'] });
    expect((await admin('PATCH', '/portal-drift', { first_party: false, backchannel_logout_uri: null })).status).toBe(200);
    expect(await ensure(config)).toBe('updated');
    expect(await (await admin('GET', '/portal-drift')).json()).toMatchObject({
      redirect_uris: [`${PORTAL_URL}/sso/callback`],
      first_party: true,
      backchannel_logout_uri: `${PORTAL_URL}/sso/backchannel-logout`,
    });
    expect((await auditRows(server, 'OAuthClientUpdate')).at(-1)).toMatchObject({ details: { fields: ['redirect_uris', 'first_party', 'backchannel_logout_uri'] } });

    await admin('DELETE', '/portal-drift');
    expect(await ensure(config)).toBe('revoked');
    expect(await (await admin('GET', '/portal-drift')).json()).toMatchObject({ revoked_at: expect.any(String) });
  });

  it('refuses a REALITY_PUBLIC_URL its URIs cannot be registered under', async () => {
    await expect(ensure(configWith({ clientId: 'portal-bad', publicUrl: 'http://portal.example' }))).rejects.toThrow(ConfigError);
  });

  it('signs a PM user in to the portal without a consent page, with an id_token and no refresh token', async () => {
    await ensure(server.config);
    const { browser } = await signedInBrowser(server);
    const redirectUri = `${PORTAL_URL}/sso/callback`;
    const { path, pkce } = authorizePath({ clientId: 'reality-portal', redirectUri, scope: 'openid profile email' });
    const response = await browser.get(path);
    expect(response.status).toBe(303);
    const location = response.headers.get('location')!;
    expect(location).toMatch(new RegExp(`^${PORTAL_URL}/sso/callback\\?code=`));

    const code = new URL(location).searchParams.get('code')!;
    const tokens = await postForm(server, '/oauth/token', { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: pkce.verifier }, { authorization: basicAuth('reality-portal', SECRET) });
    expect(tokens.status).toBe(200);
    expect(tokens.body).toMatchObject({ id_token: expect.any(String), access_token: expect.any(String) });
    expect(tokens.body).not.toHaveProperty('refresh_token');
  });
});
