import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Client, Connection } from '@temporalio/client';
import { sql } from 'slonik';
import { z } from 'zod';
import { buildRealityServer, type RealityServices } from '../../api/reality/app';
import { createDatabasePool, type DatabasePool } from '../../db/pool';
import type { AuditLog } from '../../platform/audit';
import { loadConfig, type Config } from '../../platform/config';
import { SigningKeys, type SigningKey } from '../../platform/oauth-server/signing-keys';
import { hashBearerValue } from '../../platform/secrets';
import { signLogoutToken } from '../../platform/sso/logout-tokens';
import { ensureRealityPortalClient } from '../../platform/sso/portal-client';
import { signSsoToken } from '../../platform/sso/sso-tokens';
import { TestBrowser } from './oauth-browser';
import { startOAuthTestServer, type OAuthTestServer } from './oauth-server';
import { freePort } from './ports';
import { auditRows, sessionIdOf, type AuditRow } from './sso-pm';

/** A PM user signed in at the api-server, in a browser that holds the PM session cookie. */
export interface PmSignIn {
  user: { id: string; email: string; password: string };
  /** The PM session's id: the `sid` of SSO tokens, id_tokens and logout tokens. */
  sessionId: string;
  browser: TestBrowser;
}

export interface RealityTestServers {
  /** The api-server (the OpenID Provider), on its own port. */
  api: OAuthTestServer;
  /** The reality-server's base URL (REALITY_PUBLIC_URL), e.g. http://127.0.0.1:41235 */
  url: string;
  config: Config;
  app: FastifyInstance;
  /** The reality-server's own pool (statement and lock timeouts as in production) on the shared database. */
  db: DatabasePool;
  /** The portal's client secret at the api-server. */
  clientSecret: string;
  /** The authorization server's keys, which sign SSO tokens and the api-server's logout tokens. */
  authorizationServerKeys: SigningKeys;
  /** A browser on the portal that keeps the portal's cookies. */
  browser(): TestBrowser;
  /** Another reality-server on the same database and Temporal client, with `services` in place of its own; not listening (inject), closed by the caller. */
  otherPortal(services: Partial<RealityServices>): Promise<FastifyInstance>;
  /**
   * The portal's /sso/handoff in `browser` (the first step after the PM app's button): the browser gets
   * its binding cookie; returned is the binding the PM app's next step puts in the token (`bnd`).
   */
  handoff(browser: TestBrowser): Promise<string>;
  /** The button's flow in `browser` for this PM session: the handoff, a token bound to the browser, its GET /sso/redeem (answered). */
  redeemInBrowser(browser: TestBrowser, pm: { userId: string; sessionId: string }): Promise<Response>;
  /** A new PM user (with these PM roles) signed in at the api-server's login page. */
  signInPmUser(options?: { roles?: string[] }): Promise<PmSignIn>;
  /** POST /api/v1/sso/redeem with `token`, as an API consumer does. */
  redeemApi(token: string): Promise<Response>;
  /** A portal session opened through the redemption API from the PM session: its token and id. */
  apiPortalSession(pm: PmSignIn): Promise<{ sessionToken: string; portalSessionId: string }>;
  /** The id of the portal session whose token (the API's, or the browser's cookie) this is. */
  portalSessionIdOf(sessionToken: string): Promise<string>;
  /** An SSO token as the api-server issues it; `overrides` change any of its inputs. */
  mintSsoToken(pm: { userId: string; sessionId: string }, overrides?: Partial<Parameters<typeof signSsoToken>[1]> & { key?: SigningKey }): Promise<string>;
  /** A logout token as the api-server's SSO session workflow sends it to the portal. */
  mintLogoutToken(claims: { sessionId?: string; subject?: string }): Promise<string>;
  /** The audit rows of one action, oldest first. */
  auditRows(action: string): Promise<readonly AuditRow[]>;
  close(): Promise<void>;
}

/**
 * The reality-server over HTTP, wired as in production: registered as the api-server's first-party
 * client (as the api-server's start, api/main.ts, does), with its own pool on the shared database
 * (statement and lock timeouts as in production). The caller closes the app, then the pool.
 */
export async function startRealityServer(
  apiServer: { db: DatabasePool; audit: AuditLog },
  config: Config,
  temporal: Client,
  address: { host: string; port: number },
  services: Partial<RealityServices> = {},
): Promise<{ app: FastifyInstance; db: DatabasePool }> {
  await ensureRealityPortalClient(apiServer.db, apiServer.audit, config);
  const db = await createDatabasePool(config.databaseUrl!, { statementTimeoutMs: config.databaseStatementTimeoutMs, lockTimeoutMs: config.databaseLockTimeoutMs });
  try {
    const app = await buildRealityServer({ config, db, temporal, ...services });
    await app.listen(address);
    return { app, db };
  } catch (error) {
    await db.end();
    throw error;
  }
}

/**
 * The api-server and the reality-server on real HTTP ports against one fresh test database, the portal
 * registered as the api-server's first-party OpenID Connect client. Temporal: by default both get a
 * lazy connection to a port nobody listens on (starting an SSO session workflow fails quickly and is
 * retried later); hand in `temporal` (a client of a real server whose worker runs the workflows) to
 * test the workflow. The reality-server's config is built from `realityEnvironment` on top of the
 * values that connect the two (PUBLIC_BASE_URL = the api-server, REALITY_PUBLIC_URL = its own URL).
 */
export async function startRealityTestServers(
  options: { apiEnvironment?: Record<string, string>; realityEnvironment?: Record<string, string>; temporal?: Client; services?: Partial<RealityServices> } = {},
): Promise<RealityTestServers> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const clientSecret = randomBytes(32).toString('base64url');
  const sso = { REALITY_PUBLIC_URL: url, REALITY_OIDC_CLIENT_SECRET: clientSecret };
  const api = await startOAuthTestServer({ ...sso, ...options.apiEnvironment });
  const config = loadConfig(
    { APP_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: api.config.databaseUrl, PUBLIC_BASE_URL: api.url, REALITY_PORT: String(port), ...sso, ...options.realityEnvironment },
    [],
  );
  const lazyConnection = options.temporal ? undefined : Connection.lazy({ address: '127.0.0.1:1' });
  const temporal = options.temporal ?? new Client({ connection: lazyConnection! });
  const { app, db } = await startRealityServer(api, config, temporal, { host: '127.0.0.1', port }, options.services);
  const authorizationServerKeys = new SigningKeys(api.db, api.crypto, api.config.authorizationServer.signingKeyGraceSeconds);

  const servers: RealityTestServers = {
    api,
    url,
    config,
    app,
    db,
    clientSecret,
    authorizationServerKeys,
    browser: () => new TestBrowser(url),
    otherPortal: (services) => buildRealityServer({ config, db, temporal, ...services }),
    async handoff(browser) {
      const response = await browser.get('/sso/handoff');
      const next = new URL(response.headers.get('location') ?? '', url);
      if (response.status !== 303 || next.pathname !== '/sso/reality-portal/token') throw new Error(`the handoff answered ${response.status} to ${next.href}`);
      return next.searchParams.get('binding')!;
    },
    async redeemInBrowser(browser, pm) {
      const token = await servers.mintSsoToken(pm, { browserBinding: await servers.handoff(browser) });
      return browser.get(`/sso/redeem?sso_token=${token}`);
    },
    async signInPmUser(signInOptions = {}) {
      const user = await api.createUser(`pm-${randomUUID()}@example.com`);
      if (signInOptions.roles) {
        await api.db.query(sql.unsafe`UPDATE users SET roles = ${sql.array(signInOptions.roles, 'text')}, roles_version = roles_version + 1 WHERE id = ${user.id}`);
      }
      const browser = new TestBrowser(api.url);
      const response = await browser.signIn(user.email, user.password);
      if (response.status !== 303) throw new Error(`the PM sign-in answered ${response.status}`);
      const token = browser.cookies.get('pm_session');
      if (!token) throw new Error('the PM sign-in set no session cookie');
      return { user, sessionId: await sessionIdOf(api.db, token), browser };
    },
    redeemApi: (token) =>
      fetch(`${url}/api/v1/sso/redeem`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sso_token: token }) }),
    async apiPortalSession(pm) {
      const response = await this.redeemApi(await this.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId }));
      if (response.status !== 200) throw new Error(`the redemption answered ${response.status}: ${await response.text()}`);
      const { sessionToken } = (await response.json()) as { sessionToken: string };
      return { sessionToken, portalSessionId: await this.portalSessionIdOf(sessionToken) };
    },
    portalSessionIdOf: (sessionToken) =>
      db.oneFirst(sql.type(z.object({ id: z.string() }))`SELECT id FROM portal_sessions WHERE token_hash = ${hashBearerValue(sessionToken)}`),
    async mintSsoToken(pm, overrides = {}) {
      const { key, ...claims } = overrides;
      const { token } = await signSsoToken(key ?? (await authorizationServerKeys.activeKey()), {
        issuer: api.config.authorizationServer.issuer,
        audience: config.sso.portal.clientId,
        userId: pm.userId,
        sessionId: pm.sessionId,
        lifetimeSeconds: config.sso.tokenSeconds,
        now: new Date(),
        ...claims,
      });
      return token;
    },
    async mintLogoutToken(claims) {
      const { token } = await signLogoutToken(await authorizationServerKeys.activeKey(), {
        issuer: api.config.authorizationServer.issuer,
        audience: config.sso.portal.clientId,
        now: new Date(),
        lifetimeSeconds: config.sso.logoutTokenSeconds,
        ...claims,
      });
      return token;
    },
    auditRows: (action) => auditRows(api.db, action),
    async close() {
      // Closing the portal waits for its SSO session workflow calls in flight before the connection goes.
      await app.close();
      await lazyConnection?.close().catch(() => undefined);
      await db.end();
      await api.close();
    },
  };
  return servers;
}

