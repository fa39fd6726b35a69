import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createSsoSessionLogoutActivities } from '../../activities/sso-session-logout';
import { buildRealityServer } from '../../api/reality/app';
import { loadConfig, type Config } from '../../platform/config';
import { hashBearerValue } from '../../platform/secrets';
import { createSsoSessionSync } from '../../platform/sso/backchannel-delivery';
import { ensureRealityPortalClient } from '../../platform/sso/portal-client';
import { TestBrowser } from '../helpers/oauth-browser';
import { freePort } from '../helpers/ports';
import { startRealityTestServers, type RealityTestServers } from '../helpers/reality';

// What browsers and token claims use, as behind a TLS-terminating proxy: nothing in the test listens there.
const PM_PUBLIC_URL = 'https://pm.example';
const PORTAL_PUBLIC_URL = 'https://portal.example';
const CLIENT_ID = 'portal-behind-proxy';

/**
 * The servers reach each other at their internal URLs (API_INTERNAL_URL, REALITY_INTERNAL_URL, as the
 * compose service names), while browsers are sent to, and tokens name, the public URLs.
 */
describe('server-to-server calls at the internal URLs', () => {
  let servers: RealityTestServers;
  let portal: FastifyInstance;
  let portalUrl: string;
  /** The worker's configuration: public URLs, and where it reaches each server. */
  let workerConfig: Config;

  beforeAll(async () => {
    servers = await startRealityTestServers({
      apiEnvironment: { OAUTH_ISSUER: PM_PUBLIC_URL, REALITY_PUBLIC_URL: PORTAL_PUBLIC_URL, REALITY_OIDC_CLIENT_ID: CLIENT_ID },
    });
    const port = await freePort();
    portalUrl = `http://127.0.0.1:${port}`;
    const clientSecret = randomBytes(32).toString('base64url');
    const publicAndInternal = {
      APP_ENV: 'test',
      LOG_LEVEL: 'silent',
      DATABASE_URL: servers.api.config.databaseUrl!,
      OAUTH_ISSUER: PM_PUBLIC_URL,
      API_INTERNAL_URL: servers.api.url,
      REALITY_PUBLIC_URL: PORTAL_PUBLIC_URL,
      REALITY_INTERNAL_URL: portalUrl,
      REALITY_OIDC_CLIENT_ID: CLIENT_ID,
      REALITY_OIDC_CLIENT_SECRET: clientSecret,
    };
    const portalConfig = loadConfig({ ...publicAndInternal, REALITY_PORT: String(port) }, []);
    workerConfig = loadConfig(publicAndInternal, []);
    await ensureRealityPortalClient(servers.api.db, servers.api.audit, portalConfig);
    portal = await buildRealityServer({ config: portalConfig, db: servers.db, temporal: servers.app.portal.temporal });
    await portal.listen({ host: '127.0.0.1', port });
  });

  afterAll(async () => {
    await portal?.close();
    await servers?.close();
  });

  /** A browser URL under a public URL, at the server that answers it (the proxy's part). */
  function behindProxy(location: string): string {
    const url = new URL(location);
    expect([PM_PUBLIC_URL, PORTAL_PUBLIC_URL]).toContain(url.origin);
    return url.pathname + url.search;
  }

  async function signInWithOpenIdConnect() {
    const pm = await servers.signInPmUser({ roles: ['viewer'] });
    const browser = new TestBrowser(portalUrl);
    const start = await browser.get('/sso/login');
    expect(start.status).toBe(303);
    const authorization = new URL(start.headers.get('location')!);
    expect(authorization.origin + authorization.pathname).toBe(`${PM_PUBLIC_URL}/oauth/authorize`);
    expect(authorization.searchParams.get('redirect_uri')).toBe(`${PORTAL_PUBLIC_URL}/sso/callback`);
    const authorized = await pm.browser.get(behindProxy(authorization.href));
    const callback = await browser.get(behindProxy(authorized.headers.get('location')!));
    expect(callback.status).toBe(303);
    expect(callback.headers.get('location')).toBe('/');
    return { pm, browser };
  }

  const portalSessionEnd = (browser: TestBrowser) =>
    servers.db.oneFirst(sql.type(z.object({ reason: z.string().nullable() }))`
      SELECT ended_reason AS reason FROM portal_sessions WHERE token_hash = ${hashBearerValue(browser.cookies.get('portal_session')!)}`);

  it("signs in with OpenID Connect: discovery and the token endpoint at the api-server's internal URL, the issuer public", async () => {
    const { pm, browser } = await signInWithOpenIdConnect();
    expect(await (await browser.get('/')).text()).toContain(`(${pm.user.email})`);
    expect(await portalSessionEnd(browser)).toBeNull();
  });

  it("redeems an SSO token against the api-server's keys fetched at its internal URL", async () => {
    const pm = await servers.signInPmUser();
    const token = await servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId }, { audience: CLIENT_ID });
    const response = await fetch(`${portalUrl}/api/v1/sso/redeem`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sso_token: token }) });
    expect(response.status).toBe(200);
  });

  it('delivers logout tokens naming the public URLs to both receivers at their internal URLs', async () => {
    const { pm, browser } = await signInWithOpenIdConnect();
    const sso = createSsoSessionSync(workerConfig, { db: servers.api.db, crypto: servers.api.crypto });
    const activities = createSsoSessionLogoutActivities({ db: servers.api.db, sso, clock: () => new Date() });
    const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A) =>
      new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR') }).run(fn, ...args);
    const subject = { pmSessionId: pm.sessionId, pmUserId: pm.user.id };

    // The client's registered URI is public (the OP announces it); the worker posts at the portal's internal URL.
    expect(await run(activities.deliverLogoutToPortal, subject)).toMatchObject({ status: 200 });
    expect(await portalSessionEnd(browser)).toBe('pm_logout');

    expect(await run(activities.deliverLogoutToApiServer, subject)).toMatchObject({ status: 200 });
    const revoked = await servers.api.db.oneFirst(sql.type(z.object({ revoked: z.boolean() }))`
      SELECT revoked_at IS NOT NULL AS revoked FROM user_sessions WHERE id = ${pm.sessionId}`);
    expect(revoked).toBe(true);
  });
});
