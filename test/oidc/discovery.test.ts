import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';

describe('OpenID Provider discovery', () => {
  let server: OAuthTestServer;
  beforeAll(async () => {
    server = await startOAuthTestServer();
  });
  afterAll(() => server?.close());

  const document = async () => {
    const response = await fetch(`${server.url}/.well-known/openid-configuration`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    return (await response.json()) as Record<string, unknown>;
  };

  it('publishes the RFC 8414 metadata and what an OpenID Provider adds', async () => {
    const rfc8414 = (await (await fetch(`${server.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    const metadata = await document();
    expect(metadata).toEqual({
      ...rfc8414,
      userinfo_endpoint: `${server.url}/oauth/userinfo`,
      end_session_endpoint: `${server.url}/oauth/logout`,
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256'],
      claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'acr', 'amr', 'sid', 'name', 'email', 'email_verified'],
      claim_types_supported: ['normal'],
      prompt_values_supported: ['none', 'login', 'consent'],
      acr_values_supported: ['urn:pm-app:acr:password'],
      // Only first-party clients receive logout tokens (client-metadata.ts), so third parties are told none.
      backchannel_logout_supported: false,
      backchannel_logout_session_supported: false,
      frontchannel_logout_supported: false,
      claims_parameter_supported: false,
      request_parameter_supported: false,
      request_uri_parameter_supported: false,
    });
    expect(metadata.issuer).toBe(server.url);
    expect(metadata.response_types_supported).toEqual(['code']);
    expect(metadata.scopes_supported).toEqual(expect.arrayContaining(['openid', 'profile', 'email', 'offline_access']));
    expect(metadata.grant_types_supported).toEqual(['authorization_code', 'refresh_token', 'client_credentials']);
  });

  it('every endpoint it names is routed', async () => {
    const metadata = (await document()) as Record<string, string>;
    expect((await fetch(metadata.userinfo_endpoint!)).status).toBe(401);
    expect((await fetch(metadata.jwks_uri!)).status).toBe(200);
    // No session and no hint: nothing to end, so the signed-out page.
    expect((await fetch(metadata.end_session_endpoint!, { redirect: 'manual' })).status).toBe(200);
    expect((await fetch(metadata.authorization_endpoint!, { redirect: 'manual' })).status).toBe(400);
  });

  it('says nothing it does not do', async () => {
    const metadata = await document();
    expect(metadata.response_types_supported).not.toContain('id_token');
    expect(metadata.response_modes_supported).toEqual(['query']);
    expect(metadata).not.toHaveProperty('frontchannel_logout_session_supported');
  });
});
