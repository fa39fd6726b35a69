import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientMetadataError, validateBackchannelLogoutUri } from '../../platform/oauth-server/client-metadata';
import { adminRequest, startOAuthTestServer, INITIAL_ACCESS_TOKEN, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows } from '../oauth/token-helpers';
import { CALLBACK, LOGGED_OUT } from './oidc-helpers';

/**
 * post_logout_redirect_uris (operators and dynamic registration) and backchannel_logout_uri (operators,
 * first-party clients only: logout tokens go to the Reality Portal alone): checked, stored and shown.
 */
describe('OpenID Connect client metadata', () => {
  let server: OAuthTestServer;
  beforeAll(async () => {
    server = await startOAuthTestServer();
  });
  afterAll(() => server?.close());

  const admin = (method: string, path: string, body?: unknown) => adminRequest(server.url, method, `/api/v1/admin/oauth/clients${path}`, body);
  const register = (body: unknown) =>
    fetch(`${server.url}/oauth/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${INITIAL_ACCESS_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const base = {
    name: 'Relying party',
    redirect_uris: [CALLBACK],
    grant_types: ['authorization_code', 'refresh_token'],
    scopes: ['openid', 'profile', 'email'],
    token_endpoint_auth_method: 'client_secret_basic',
  };

  const firstParty = { ...base, first_party: true };

  it('the admin API stores both for a first-party client and every read shows them', async () => {
    const created = await admin('POST', '', { ...firstParty, post_logout_redirect_uris: [LOGGED_OUT, LOGGED_OUT], backchannel_logout_uri: 'https://rp.example/bc?x=1' });
    expect(created.status).toBe(201);
    const view = (await created.json()) as { client_id: string };
    const expected = { first_party: true, post_logout_redirect_uris: [LOGGED_OUT], backchannel_logout_uri: 'https://rp.example/bc?x=1' };
    expect(view).toMatchObject(expected);
    expect(await (await admin('GET', `/${view.client_id}`)).json()).toMatchObject(expected);
    const list = (await (await admin('GET', '')).json()) as { clients: Array<{ client_id: string }> };
    expect(list.clients.find((client) => client.client_id === view.client_id)).toMatchObject(expected);
    expect((await auditRows(server, 'OAuthClientCreate')).at(-1)).toMatchObject({ client_id: view.client_id, details: expected });
  });

  it('a client without them shows none', async () => {
    const created = (await (await admin('POST', '', base)).json()) as Record<string, unknown>;
    expect(created).toMatchObject({ first_party: false, post_logout_redirect_uris: [], backchannel_logout_uri: null });
  });

  it.each([
    ['plain http to a remote host', { post_logout_redirect_uris: ['http://rp.example/out'] }, 'invalid_redirect_uri'],
    ['a fragment', { post_logout_redirect_uris: [`${LOGGED_OUT}#done`] }, 'invalid_redirect_uri'],
    ['whitespace', { post_logout_redirect_uris: [`${LOGGED_OUT} `] }, 'invalid_redirect_uri'],
    ['a relative URI', { post_logout_redirect_uris: ['/out'] }, 'invalid_redirect_uri'],
    ['a back-channel URI over plain http to a remote host', { first_party: true, backchannel_logout_uri: 'http://rp.example/bc' }, 'invalid_client_metadata'],
    ['a back-channel URI with a fragment', { first_party: true, backchannel_logout_uri: 'https://rp.example/bc#x' }, 'invalid_client_metadata'],
    ['a back-channel URI that is no URI', { first_party: true, backchannel_logout_uri: 'bc' }, 'invalid_client_metadata'],
  ])('the admin API refuses %s', async (_label, members, error) => {
    const response = await admin('POST', '', { ...base, ...members });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error });
  });

  it('refuses both for a client that cannot sign users in (client_credentials only)', async () => {
    const service = { ...base, redirect_uris: [], grant_types: ['client_credentials'], kind: 'service', scopes: ['properties:read'] };
    expect((await admin('POST', '', { ...service, post_logout_redirect_uris: [LOGGED_OUT] })).status).toBe(400);
    expect((await admin('POST', '', { ...service, backchannel_logout_uri: 'https://rp.example/bc' })).status).toBe(400);
  });

  it('http to a loopback address is a back-channel URI outside production only', async () => {
    const created = await admin('POST', '', { ...firstParty, backchannel_logout_uri: 'http://127.0.0.1:4000/bc' });
    expect(created.status).toBe(201);
    const portalLike = { grantTypes: ['authorization_code'], firstParty: true };
    expect(validateBackchannelLogoutUri('http://127.0.0.1:4000/bc', portalLike, { production: false })).toBe('http://127.0.0.1:4000/bc');
    expect(() => validateBackchannelLogoutUri('http://127.0.0.1:4000/bc', portalLike, { production: true })).toThrow(ClientMetadataError);
    expect(validateBackchannelLogoutUri('https://rp.example/bc', portalLike, { production: true })).toBe('https://rp.example/bc');
  });

  it('refuses a back-channel URI for a third-party client, which would never receive a logout token', async () => {
    const response = await admin('POST', '', { ...base, backchannel_logout_uri: 'https://rp.example/bc' });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: 'invalid_client_metadata', message: expect.stringMatching(/first-party clients only.*RP-initiated logout/) });

    const { client_id: clientId } = (await (await admin('POST', '', base)).json()) as { client_id: string };
    const patched = await admin('PATCH', `/${clientId}`, { backchannel_logout_uri: 'https://rp.example/bc' });
    expect(patched.status).toBe(400);
    expect(await patched.json()).toMatchObject({ error: 'invalid_client_metadata' });
    expect(await (await admin('GET', `/${clientId}`)).json()).toMatchObject({ backchannel_logout_uri: null });

    // Made first-party in the same change, it may have one; made third-party again, the URI must go with it.
    expect((await admin('PATCH', `/${clientId}`, { first_party: true, backchannel_logout_uri: 'https://rp.example/bc' })).status).toBe(200);
    const demoted = await admin('PATCH', `/${clientId}`, { first_party: false });
    expect(demoted.status).toBe(400);
    expect(await demoted.json()).toMatchObject({ error: 'invalid_client_metadata' });
    expect(await (await admin('GET', `/${clientId}`)).json()).toMatchObject({ first_party: true, backchannel_logout_uri: 'https://rp.example/bc' });
    expect(await (await admin('PATCH', `/${clientId}`, { first_party: false, backchannel_logout_uri: null })).json()).toMatchObject({
      first_party: false,
      backchannel_logout_uri: null,
    });
  });

  it('the admin API changes them (PATCH), audited with what changed', async () => {
    const { client_id: clientId } = (await (await admin('POST', '', { ...firstParty, backchannel_logout_uri: 'https://rp.example/bc' })).json()) as { client_id: string };
    const changed = await admin('PATCH', `/${clientId}`, { post_logout_redirect_uris: [LOGGED_OUT], backchannel_logout_uri: null });
    expect(changed.status).toBe(200);
    expect(await changed.json()).toMatchObject({ post_logout_redirect_uris: [LOGGED_OUT], backchannel_logout_uri: null, first_party: true });
    expect((await auditRows(server, 'OAuthClientUpdate')).at(-1)).toMatchObject({
      client_id: clientId,
      details: { fields: ['post_logout_redirect_uris', 'backchannel_logout_uri'], post_logout_redirect_uris: [LOGGED_OUT], backchannel_logout_uri: null },
    });

    const invalid = await admin('PATCH', `/${clientId}`, { post_logout_redirect_uris: ['http://rp.example/out'] });
    expect(invalid.status).toBe(400);
    expect(await (await admin('GET', `/${clientId}`)).json()).toMatchObject({ post_logout_redirect_uris: [LOGGED_OUT] });
    expect((await admin('PATCH', `/${clientId}`, {})).status).toBe(400);
    expect((await admin('PATCH', '/c_unknown', { first_party: true })).status).toBe(404);
    await admin('DELETE', `/${clientId}`);
    expect((await admin('PATCH', `/${clientId}`, { first_party: true })).status).toBe(409);
  });

  it('dynamic registration takes post-logout redirect URIs (OpenID Connect names)', async () => {
    const response = await register({ redirect_uris: [CALLBACK], scope: 'openid email', post_logout_redirect_uris: [LOGGED_OUT] });
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ post_logout_redirect_uris: [LOGGED_OUT], backchannel_logout_uri: null, first_party: false, scope: 'openid email' });
  });

  it('dynamic registration refuses a back-channel URI, saying why and what to use instead', async () => {
    const response = await register({ redirect_uris: [CALLBACK], scope: 'openid', backchannel_logout_uri: 'https://rp.example/bc' });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'invalid_client_metadata', error_description: expect.stringMatching(/first-party clients only.*RP-initiated logout/) });
  });

  it.each([
    ['an unregistrable post-logout URI', { post_logout_redirect_uris: ['http://rp.example/out'] }, 'invalid_redirect_uri'],
    ['an unregistrable back-channel URI', { backchannel_logout_uri: 'http://rp.example/bc' }, 'invalid_client_metadata'],
  ])('dynamic registration refuses %s', async (_label, members, error) => {
    const response = await register({ redirect_uris: [CALLBACK], scope: 'openid', ...members });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error });
  });
});
