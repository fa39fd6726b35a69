import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { sql } from 'slonik';
import { z } from 'zod';
import type { DatabasePool } from '../../db/pool';
import { hashBearerValue } from '../../platform/secrets';
import { createUser } from '../../platform/users';
import type { ssoSessionWorkflow } from '../../workflows/sso-session';
import { ssoSessionWorkflowId } from '../../workflows/sso-session-messages';
import { eventually } from './eventually';
import { TestBrowser } from './oauth-browser';
import { adminRequest, ADMIN_TOKEN, USER_PASSWORD } from './oauth-server';
import { startTestPlatform, type TestPlatform } from './platform';
import { freePort } from './ports';
import { startRealityServer } from './reality';
import { auditRows, type AuditRow } from './sso-pm';
import type { SsoSessionHandle } from './sso-sessions';

/**
 * Single sign-on with every real part, wired as production wires it: the platform of startTestPlatform
 * (Postgres, the worker with all activities, the api-server over HTTP) on a real Temporal server, and
 * the reality-server over HTTP on 127.0.0.1 with its own pool on the shared database and a Temporal
 * client of the same server. The api-server's issuer is its own URL, REALITY_PUBLIC_URL the portal's,
 * and the portal is registered as the api-server's first-party client (ensureRealityPortalClient, as
 * api/main.ts does at start). Both servers and the worker read one configuration, as in production
 * where they read the same environment.
 */
export interface SsoTestPlatform {
  /** The api-server (the OpenID Provider) is `platform.apiUrl`; `platform.client` reaches the workflows. */
  platform: TestPlatform;
  /** The reality-server's base URL (REALITY_PUBLIC_URL). */
  portalUrl: string;
  portal: FastifyInstance;
  /** The reality-server's own pool (statement and lock timeouts as in production). */
  portalDb: DatabasePool;
  /**
   * A browser of both apps. One cookie jar serves both, as in a real browser: cookies belong to a host
   * whatever the port, so the PM app's and the portal's cookies on 127.0.0.1 are one jar.
   */
  browser(): TestBrowser;
  /** A new PM user; `roles` are given through the admin API, as an operator would. */
  createPmUser(roles?: string[]): Promise<PmUser>;
  /** A request to the api-server's admin API with the admin token. */
  admin(method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<Response>;
  close(): Promise<void>;
}

export interface PmUser {
  id: string;
  email: string;
  displayName: string;
  password: string;
}

export async function startSsoTestPlatform(temporal: TestWorkflowEnvironment, options: { environment?: Record<string, string> } = {}): Promise<SsoTestPlatform> {
  const portalPort = await freePort();
  const portalUrl = `http://127.0.0.1:${portalPort}`;
  const platform = await startTestPlatform({
    temporal,
    environment: {
      ADMIN_API_TOKEN: ADMIN_TOKEN,
      REALITY_HOST: '127.0.0.1',
      REALITY_PORT: String(portalPort),
      REALITY_PUBLIC_URL: portalUrl,
      REALITY_OIDC_CLIENT_SECRET: randomBytes(32).toString('base64url'),
      ...options.environment,
    },
  });
  const { config } = platform;
  let portalDb: DatabasePool | undefined;
  let portal: FastifyInstance | undefined;
  const close = async () => {
    // The portal first: its close waits for the SSO session workflow calls in flight.
    await portal?.close();
    await portalDb?.end();
    await platform.close();
  };
  try {
    ({ app: portal, db: portalDb } = await startRealityServer(platform, config, platform.client, { host: config.realityServer.host, port: config.realityServer.port }));
  } catch (error) {
    await close();
    throw error;
  }

  const admin: SsoTestPlatform['admin'] = (method, path, body) => adminRequest(platform.apiUrl, method, path, body);

  return {
    platform,
    portalUrl,
    portal,
    portalDb,
    browser: () => new TestBrowser(platform.apiUrl),
    admin,
    async createPmUser(roles = []) {
      const email = `pm-${randomUUID()}@example.com`;
      const displayName = `PM user ${email.slice(3, 11)}`;
      const user = await createUser(platform.db, { email, displayName, password: USER_PASSWORD });
      if (roles.length > 0) {
        const response = await admin('PUT', `/api/v1/admin/users/${user.id}/roles`, { roles });
        if (response.status !== 200) throw new Error(`setting the roles answered ${response.status}: ${await response.text()}`);
      }
      return { id: user.id, email, displayName, password: USER_PASSWORD };
    },
    close,
  };
}

/** Follows redirects as a browser does (GET after 301/302/303), from `response`; returns the last answer and the URLs it went through. */
export async function followRedirects(browser: TestBrowser, response: Response, limit = 10): Promise<{ response: Response; visited: URL[] }> {
  const visited: URL[] = [];
  let current = response;
  while (current.status >= 300 && current.status < 400) {
    if (visited.length >= limit) throw new Error(`more than ${limit} redirects: ${visited.join(' -> ')}`);
    const next = new URL(current.headers.get('location')!, current.url);
    visited.push(next);
    await current.body?.cancel();
    current = await browser.get(next.toString());
  }
  return { response: current, visited };
}

/** The browser's live sessions on both sides, from their cookies (only the hashes are stored). */
export async function sessionsOf(sso: SsoTestPlatform, browser: TestBrowser): Promise<{ pmSessionId: string | null; portalSessionId: string | null }> {
  const idOf = async (table: 'user_sessions' | 'portal_sessions', cookie: string) => {
    const token = browser.cookies.get(cookie);
    if (!token) return null;
    return sso.platform.db.maybeOneFirst(sql.type(z.object({ id: z.string() }))`SELECT id FROM ${sql.identifier([table])} WHERE token_hash = ${hashBearerValue(token)}`);
  };
  return { pmSessionId: await idOf('user_sessions', 'pm_session'), portalSessionId: await idOf('portal_sessions', 'portal_session') };
}

const portalSessionRow = z.object({
  pmSessionId: z.string().nullable(),
  method: z.string(),
  endedAt: z.number().nullable(),
  endedReason: z.string().nullable(),
  workflowStartedAt: z.number().nullable(),
  rolesVersion: z.number(),
});
export type PortalSessionRow = z.infer<typeof portalSessionRow>;

export function readPortalSession(sso: SsoTestPlatform, portalSessionId: string): Promise<PortalSessionRow> {
  return sso.platform.db.one(sql.type(portalSessionRow)`
    SELECT pm_session_id AS "pmSessionId", method, ended_at AS "endedAt", ended_reason AS "endedReason",
           workflow_started_at AS "workflowStartedAt", roles_version AS "rolesVersion"
    FROM portal_sessions WHERE id = ${portalSessionId}`);
}

export function readPmSession(sso: SsoTestPlatform, pmSessionId: string): Promise<{ revokedAt: number | null; endedReason: string | null }> {
  return sso.platform.db.one(sql.type(z.object({ revokedAt: z.number().nullable(), endedReason: z.string().nullable() }))`
    SELECT revoked_at AS "revokedAt", ended_reason AS "endedReason" FROM user_sessions WHERE id = ${pmSessionId}`);
}

/** The portal session's SSO session workflow, once the reality-server has recorded its start. */
export async function runningSsoSessionWorkflow(sso: SsoTestPlatform, portalSessionId: string): Promise<SsoSessionHandle> {
  await eventually(async () => (await readPortalSession(sso, portalSessionId)).workflowStartedAt !== null, 15_000, 'the start of the SSO session workflow');
  return sso.platform.client.workflow.getHandle<typeof ssoSessionWorkflow>(ssoSessionWorkflowId(portalSessionId));
}

/** The audit rows of one action about one PM user, oldest first. */
export async function auditRowsOf(sso: SsoTestPlatform, action: string, pmUserId: string): Promise<AuditRow[]> {
  return (await auditRows(sso.platform.db, action)).filter((row) => row.userId === pmUserId);
}
