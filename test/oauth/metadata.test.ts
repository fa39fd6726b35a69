import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';

describe('authorization server metadata (RFC 8414)', () => {
  let server: OAuthTestServer;
  beforeAll(async () => {
    server = await startOAuthTestServer();
  });
  afterAll(() => server?.close());

  it('publishes the issuer, every endpoint and what the server supports', async () => {
    const response = await fetch(`${server.url}/.well-known/oauth-authorization-server`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const metadata = await response.json();
    expect(metadata).toEqual({
      issuer: server.url,
      authorization_endpoint: `${server.url}/oauth/authorize`,
      token_endpoint: `${server.url}/oauth/token`,
      introspection_endpoint: `${server.url}/oauth/introspect`,
      revocation_endpoint: `${server.url}/oauth/revoke`,
      registration_endpoint: `${server.url}/oauth/register`,
      jwks_uri: `${server.url}/oauth/jwks`,
      response_types_supported: ['code'],
      response_modes_supported: ['query'],
      grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
      code_challenge_methods_supported: ['S256'],
      scopes_supported: expect.arrayContaining(['properties:read', 'offline_access']),
      authorization_response_iss_parameter_supported: true,
    });
  });

  it('never advertises implicit, password or plain PKCE', async () => {
    const metadata = (await (await fetch(`${server.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, string[]>;
    expect(metadata.response_types_supported).not.toContain('token');
    expect(metadata.grant_types_supported).not.toContain('password');
    expect(metadata.grant_types_supported).not.toContain('implicit');
    expect(metadata.code_challenge_methods_supported).not.toContain('plain');
  });

  it('every advertised endpoint of ours is routed (none answers 404)', async () => {
    const metadata = (await (await fetch(`${server.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, string>;
    for (const key of ['token_endpoint', 'introspection_endpoint', 'revocation_endpoint']) {
      const response = await fetch(metadata[key]!, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
      expect(response.status, key).not.toBe(404);
    }
    expect((await fetch(metadata.jwks_uri!)).status).toBe(200);
  });

  it('does not advertise dynamic registration when it is switched off', async () => {
    const closed = await startOAuthTestServer({ OAUTH_INITIAL_ACCESS_TOKEN: '' });
    try {
      const metadata = (await (await fetch(`${closed.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
      expect(metadata).not.toHaveProperty('registration_endpoint');
      expect(metadata.token_endpoint).toBe(`${closed.url}/oauth/token`);
    } finally {
      await closed.close();
    }
  });
});
