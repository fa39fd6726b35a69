import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiServerKeySet } from '../../platform/sso/api-server-keys';
import { newBrowserBinding } from '../../platform/sso/browser-binding';
import { eventually } from '../helpers/eventually';
import { startRealityTestServers, type PmSignIn, type RealityTestServers } from '../helpers/reality';

/**
 * The portal's copy of the api-server's signing keys (fetched from its JWKS) when the api-server rotates
 * its key (`npm run rotate-signing-key`): a sign-in or logout token signed by the new key is never
 * refused, while a key the api-server never had still is.
 */
describe("the api-server's keys at the portal", () => {
  let servers: RealityTestServers;
  const portals: FastifyInstance[] = [];

  beforeAll(async () => {
    servers = await startRealityTestServers();
  });

  afterAll(async () => {
    for (const portal of portals) await portal.close();
    await servers?.close();
  });

  /** A reality-server on the shared database with a key set of its own, not fetched yet. */
  async function portalWithOwnKeySet(options: { cooldownMs?: number } = {}): Promise<FastifyInstance> {
    const portal = await servers.otherPortal({ apiServerKeys: apiServerKeySet(servers.api.url, { timeoutMs: servers.config.sso.portal.apiServerTimeoutMs, ...options }) });
    portals.push(portal);
    return portal;
  }

  const redeem = (portal: FastifyInstance, token: string) => portal.inject({ method: 'POST', url: '/api/v1/sso/redeem', payload: { sso_token: token } });
  const deliverLogout = (portal: FastifyInstance, token: string) =>
    portal.inject({
      method: 'POST',
      url: '/sso/backchannel-logout',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ logout_token: token }).toString(),
    });
  const ssoToken = (pm: PmSignIn) => servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId });
  const rejections = async (pm: PmSignIn) => (await servers.auditRows('SsoTokenRejected')).filter((row) => row.userId === pm.user.id);

  it('answers 503 for tokens of a key rotated to within the cooldown, and the same tokens work once the keys are fetched again', async () => {
    const pm = await servers.signInPmUser();
    const portal = await portalWithOwnKeySet();
    expect((await redeem(portal, await ssoToken(pm))).statusCode).toBe(200);

    await servers.authorizationServerKeys.rotate();
    const signIn = await ssoToken(pm);
    const logout = await servers.mintLogoutToken({ sessionId: randomUUID() });

    const refusedSignIn = await redeem(portal, signIn);
    expect(refusedSignIn.statusCode).toBe(503);
    expect(refusedSignIn.headers['retry-after']).toBeDefined();
    expect(refusedSignIn.json()).toMatchObject({ error: 'temporarily_unavailable' });
    const page = await portal.inject({ url: `/sso/redeem?sso_token=${signIn}` });
    expect(page.statusCode).toBe(503);
    // The SSO session workflow retries a 503; a 400 would be final.
    expect((await deliverLogout(portal, logout)).statusCode).toBe(503);
    expect(await rejections(pm)).toEqual([]);

    // Nothing was consumed: a key set fetched after the rotation accepts both.
    const refetched = await portalWithOwnKeySet();
    expect((await redeem(refetched, signIn)).statusCode).toBe(200);
    expect((await deliverLogout(refetched, logout)).statusCode).toBe(200);
  });

  it('signs the user in as soon as the cooldown has passed, answering nothing but 503 before', async () => {
    const pm = await servers.signInPmUser();
    const portal = await portalWithOwnKeySet({ cooldownMs: 1000 });
    expect((await redeem(portal, await ssoToken(pm))).statusCode).toBe(200);

    await servers.authorizationServerKeys.rotate();
    const token = await ssoToken(pm);
    const statuses: number[] = [];
    await eventually(async () => {
      statuses.push((await redeem(portal, token)).statusCode);
      return statuses.at(-1) === 200;
    }, 10_000, 'the redemption after the cooldown');
    expect(new Set(statuses.slice(0, -1))).toEqual(new Set(statuses.length > 1 ? [503] : []));
    expect(await rejections(pm)).toEqual([]);
  });

  it("keeps the browser's binding cookie through a 503, so reloading the PM app's link signs in once the keys are fetched again", async () => {
    const pm = await servers.signInPmUser();
    const portal = await portalWithOwnKeySet({ cooldownMs: 1000 });
    expect((await redeem(portal, await ssoToken(pm))).statusCode).toBe(200);

    await servers.authorizationServerKeys.rotate();
    const { cookieValue, binding } = newBrowserBinding();
    const link = `/sso/redeem?sso_token=${await servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId }, { browserBinding: binding })}`;
    const open = () => portal.inject({ url: link, cookies: { portal_sso_binding: cookieValue } });
    const bindingCookieSet = (response: Awaited<ReturnType<typeof open>>) => response.cookies.find((cookie) => cookie.name === 'portal_sso_binding');

    const first = await open();
    expect(first.statusCode).toBe(503);
    expect(bindingCookieSet(first)).toBeUndefined();
    // The browser reloads the same link (with the cookie it still holds) until the portal has the new key.
    const signedIn = await eventually(async () => {
      const response = await open();
      if (response.statusCode === 503) expect(bindingCookieSet(response)).toBeUndefined();
      return response.statusCode !== 503 && response;
    }, 10_000, 'the reload after the cooldown');
    expect(signedIn.statusCode).toBe(303);
    expect(signedIn.headers.location).toBe('/');
    expect(signedIn.cookies.map((cookie) => cookie.name)).toContain('portal_session');
    // Used now: cleared.
    expect(bindingCookieSet(signedIn)).toMatchObject({ value: '' });
    expect(await rejections(pm)).toEqual([]);
    expect((await servers.auditRows('SsoLogin')).filter((row) => row.userId === pm.user.id)).toHaveLength(2);
  });

  it('refuses a key the api-server never had once the key set was fetched for it, and fetches no more for invented kids meanwhile', async () => {
    const pm = await servers.signInPmUser();
    const portal = await portalWithOwnKeySet();
    const stranger = async () =>
      servers.mintSsoToken(
        { userId: pm.user.id, sessionId: pm.sessionId },
        { key: { kid: randomUUID(), alg: 'RS256', privateKey: (await generateKeyPair('RS256')).privateKey } },
      );

    const refused = await redeem(portal, await stranger());
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toMatchObject({ error: 'bad_signature' });
    expect((await rejections(pm)).map((row) => row.details.reason)).toEqual(['bad_signature']);

    // Within the cooldown another unknown kid cannot be checked against a fresh set: later, not no.
    expect((await redeem(portal, await stranger())).statusCode).toBe(503);
    expect(await rejections(pm)).toHaveLength(1);
  });
});
