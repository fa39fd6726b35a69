import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientMetadataError, validateBackchannelLogoutUri } from '../../platform/oauth-server/client-metadata';
import { ensureRealityPortalClient } from '../../platform/sso/portal-client';
import { adminRequest, startOAuthTestServer, INITIAL_ACCESS_TOKEN, type OAuthTestServer } from '../helpers/oauth-server';
import { auditRows } from '../oauth/token-helpers';
import { CALLBACK, LOGGED_OUT } from './oidc-helpers';

const PORTAL_CLIENT_ID = 'metadata-test-portal';
const PORTAL_ONLY = /Reality Portal's client only.*RP-initiated logout/;

/**
 * post_logout_redirect_uris (operators and dynamic registration) and backchannel_logout_uri (operators,
 * the Reality Portal's client only: logout tokens go to it alone): checked, stored and shown.
 */
describe('OpenID Connect client metadata', () => {
  let server: OAuthTestServer;
  beforeAll(async () => {
    server = await startOAuthTestServer({
      REALITY_PUBLIC_URL: 'http://127.0.0.1:39003',
      REALITY_OIDC_CLIENT_ID: PORTAL_CLIENT_ID,
      REALITY_OIDC_CLIENT_SECRET: 'metadata-portal-secret-0123456789abcdef',
    });
    expect(await ensureRealityPortalClient(server.db, server.audit, server.config)).toBe('created');
  });
  afterAll(() => server?.close());

  const admin = (method: string, path: string, body?: unknown) => adminRequest(server.url, method, `/api/v1/admin/oauth/clients${path}`, body);
  const portalClient = (body: unknown) => admin('PATCH', `/${PORTAL_CLIENT_ID}`, body);
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
  const createdId = async (body: unknown) => ((await (await admin('POST', '', body)).json()) as { client_id: string }).client_id;

  it("the admin API stores post-logout redirect URIs for a client and a back-channel URI for the portal's client, and every read shows them", async () => {
    const created = await admin('POST', '', { ...firstParty, post_logout_redirect_uris: [LOGGED_OUT, LOGGED_OUT] });
    expect(created.status).toBe(201);
    const view = (await created.json()) as { client_id: string };
    const expected = { first_party: true, post_logout_redirect_uris: [LOGGED_OUT], backchannel_logout_uri: null };
    expect(view).toMatchObject(expected);
    expect(await (await admin('GET', `/${view.client_id}`)).json()).toMatchObject(expected);
    expect((await auditRows(server, 'OAuthClientCreate')).at(-1)).toMatchObject({ client_id: view.client_id, details: expected });

    expect((await portalClient({ backchannel_logout_uri: 'https://rp.example/bc?x=1' })).status).toBe(200);
    const portal = { first_party: true, backchannel_logout_uri: 'https://rp.example/bc?x=1' };
    expect(await (await admin('GET', `/${PORTAL_CLIENT_ID}`)).json()).toMatchObject(portal);
    const list = (await (await admin('GET', '')).json()) as { clients: Array<{ client_id: string }> };
    expect(list.clients.find((client) => client.client_id === view.client_id)).toMatchObject(expected);
    expect(list.clients.find((client) => client.client_id === PORTAL_CLIENT_ID)).toMatchObject(portal);
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
  ])('the admin API refuses a post-logout URI with %s', async (_label, members, error) => {
    const response = await admin('POST', '', { ...base, ...members });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error });
  });

  it.each([
    ['over plain http to a remote host', 'http://rp.example/bc'],
    ['with a fragment', 'https://rp.example/bc#x'],
    ['that is no URI', 'bc'],
  ])("the admin API refuses the portal's client a back-channel URI %s", async (_label, uri) => {
    const before = ((await (await admin('GET', `/${PORTAL_CLIENT_ID}`)).json()) as { backchannel_logout_uri: string | null }).backchannel_logout_uri;
    const response = await portalClient({ backchannel_logout_uri: uri });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: 'invalid_client_metadata' });
    expect(await (await admin('GET', `/${PORTAL_CLIENT_ID}`)).json()).toMatchObject({ backchannel_logout_uri: before });
  });

  it('refuses both for a client that cannot sign users in (client_credentials only)', async () => {
    const service = { ...base, redirect_uris: [], grant_types: ['client_credentials'], kind: 'service', scopes: ['properties:read'] };
    expect((await admin('POST', '', { ...service, post_logout_redirect_uris: [LOGGED_OUT] })).status).toBe(400);
    expect((await admin('POST', '', { ...service, backchannel_logout_uri: 'https://rp.example/bc' })).status).toBe(400);
  });

  it('http to a loopback address is a back-channel URI outside production only', async () => {
    expect((await portalClient({ backchannel_logout_uri: 'http://127.0.0.1:4000/bc' })).status).toBe(200);
    const portal = { id: 'portal', grantTypes: ['authorization_code'], firstParty: true };
    expect(validateBackchannelLogoutUri('http://127.0.0.1:4000/bc', portal, { production: false, portalClientId: 'portal' })).toBe('http://127.0.0.1:4000/bc');
    expect(() => validateBackchannelLogoutUri('http://127.0.0.1:4000/bc', portal, { production: true, portalClientId: 'portal' })).toThrow(ClientMetadataError);
    expect(validateBackchannelLogoutUri('https://rp.example/bc', portal, { production: true, portalClientId: 'portal' })).toBe('https://rp.example/bc');
  });

  it("refuses a back-channel URI for every client but the portal's, first-party or not: none of them would ever receive a logout token", async () => {
    for (const members of [base, firstParty]) {
      const response = await admin('POST', '', { ...members, backchannel_logout_uri: 'https://rp.example/bc' });
      expect(response.status, JSON.stringify(members)).toBe(400);
      expect(await response.json()).toMatchObject({ error: 'invalid_client_metadata', message: expect.stringMatching(PORTAL_ONLY) });
    }
    for (const members of [base, firstParty]) {
      const clientId = await createdId(members);
      const patched = await admin('PATCH', `/${clientId}`, { first_party: true, backchannel_logout_uri: 'https://rp.example/bc' });
      expect(patched.status).toBe(400);
      expect(await patched.json()).toMatchObject({ error: 'invalid_client_metadata', message: expect.stringMatching(PORTAL_ONLY) });
      expect(await (await admin('GET', `/${clientId}`)).json()).toMatchObject({ backchannel_logout_uri: null });
    }
    const portal = { id: 'portal', grantTypes: ['authorization_code'], firstParty: true };
    expect(() => validateBackchannelLogoutUri('https://rp.example/bc', { ...portal, id: 'another' }, { production: true, portalClientId: 'portal' })).toThrow(PORTAL_ONLY);
    expect(() => validateBackchannelLogoutUri('https://rp.example/bc', { ...portal, id: undefined }, { production: true })).toThrow(PORTAL_ONLY);
  });

  it("the portal's client keeps its back-channel URI only while first-party", async () => {
    expect((await portalClient({ backchannel_logout_uri: 'https://rp.example/bc' })).status).toBe(200);
    const demoted = await portalClient({ first_party: false });
    expect(demoted.status).toBe(400);
    expect(await demoted.json()).toMatchObject({ error: 'invalid_client_metadata', message: expect.stringMatching(/first_party: true.*backchannel_logout_uri: null/) });
    expect((await portalClient({ first_party: false, backchannel_logout_uri: 'https://rp.example/bc' })).status).toBe(400);
    expect(await (await admin('GET', `/${PORTAL_CLIENT_ID}`)).json()).toMatchObject({ first_party: true, backchannel_logout_uri: 'https://rp.example/bc' });
    expect(await (await portalClient({ first_party: false, backchannel_logout_uri: null })).json()).toMatchObject({ first_party: false, backchannel_logout_uri: null });
    // The configuration puts it back at the next start.
    expect(await ensureRealityPortalClient(server.db, server.audit, server.config)).toBe('updated');
    expect(await (await admin('GET', `/${PORTAL_CLIENT_ID}`)).json()).toMatchObject({ first_party: true, backchannel_logout_uri: 'http://127.0.0.1:39003/sso/backchannel-logout' });
  });

  it('the admin API changes them (PATCH), audited with what changed', async () => {
    const changed = await portalClient({ post_logout_redirect_uris: [LOGGED_OUT], backchannel_logout_uri: null });
    expect(changed.status).toBe(200);
    expect(await changed.json()).toMatchObject({ post_logout_redirect_uris: [LOGGED_OUT], backchannel_logout_uri: null, first_party: true });
    expect((await auditRows(server, 'OAuthClientUpdate')).at(-1)).toMatchObject({
      client_id: PORTAL_CLIENT_ID,
      details: { fields: ['post_logout_redirect_uris', 'backchannel_logout_uri'], post_logout_redirect_uris: [LOGGED_OUT], backchannel_logout_uri: null },
    });

    const clientId = await createdId(firstParty);
    expect((await admin('PATCH', `/${clientId}`, { post_logout_redirect_uris: [LOGGED_OUT] })).status).toBe(200);
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
    expect(await response.json()).toEqual({ error: 'invalid_client_metadata', error_description: expect.stringMatching(PORTAL_ONLY) });
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
