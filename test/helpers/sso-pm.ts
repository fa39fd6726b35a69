import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { SigningKeys } from '../../platform/oauth-server/signing-keys';
import { hashBearerValue, randomToken } from '../../platform/secrets';
import { signLogoutToken } from '../../platform/sso/logout-tokens';
import type { OAuthTestServer } from './oauth-server';

/**
 * The PM side of single sign-on as its tests need it: an api-server with SSO configured (the portal
 * itself is not running; its URL only has to be where the button sends browsers), PM sign-ins, portal
 * rows inserted as the reality-server would write them, and the audit rows to check.
 */

export const PORTAL_URL = 'http://portal.example.test';
export const PORTAL_CLIENT_ID = 'reality-portal';

export const SSO_ENVIRONMENT = {
  REALITY_PUBLIC_URL: PORTAL_URL,
  REALITY_OIDC_CLIENT_ID: PORTAL_CLIENT_ID,
  REALITY_OIDC_CLIENT_SECRET: 'portal-client-secret-for-tests-0123456789',
};

export interface PmSignIn {
  sessionToken: string;
  /** The session's id: the `sid` of SSO and logout tokens. */
  sessionId: string;
}

/** Signs in with the JSON login, as an API consumer (the session token is a Bearer token). */
export async function signInPm(server: OAuthTestServer, email: string, password: string): Promise<PmSignIn> {
  const response = await fetch(`${server.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
  if (response.status !== 200) throw new Error(`login answered ${response.status}`);
  const { sessionToken } = (await response.json()) as { sessionToken: string };
  return { sessionToken, sessionId: await sessionIdOf(server.db, sessionToken) };
}

export function sessionIdOf(db: CommonQueryMethods, sessionToken: string): Promise<string> {
  return db.oneFirst(sql.type(z.object({ id: z.string() }))`SELECT id FROM user_sessions WHERE token_hash = ${hashBearerValue(sessionToken)}`);
}

/** Whether the PM session has ended (revoked_at), and why. */
export function sessionRevoked(server: { db: CommonQueryMethods }, sessionId: string): Promise<{ revoked: boolean; reason: string | null }> {
  return server.db.one(sql.type(z.object({ revoked: z.boolean(), reason: z.string().nullable() }))`
    SELECT revoked_at IS NOT NULL AS revoked, ended_reason AS reason FROM user_sessions WHERE id = ${sessionId}`);
}

/** The reality-server's keys in the shared database: the worker signs the portal's logout tokens with them. */
export function portalSigningKeys(server: OAuthTestServer): SigningKeys {
  return new SigningKeys(server.db, server.crypto, server.config.authorizationServer.signingKeyGraceSeconds, 'reality-server');
}

/** A logout token as the SSO session workflow sends it for the portal to the api-server; `claims` override its inputs. */
export async function portalLogoutToken(server: OAuthTestServer, claims: { sessionId?: string; subject?: string; audience?: string; issuer?: string; now?: Date }) {
  return signLogoutToken(await portalSigningKeys(server).activeKey(), {
    issuer: PORTAL_URL,
    audience: server.url,
    now: new Date(),
    lifetimeSeconds: server.config.sso.logoutTokenSeconds,
    ...claims,
  });
}

/** Delivers a logout token to the api-server's POST /oauth/backchannel-logout as the worker does (no form field when undefined). */
export function sendPortalLogoutToken(server: OAuthTestServer, token: string | undefined): Promise<Response> {
  return fetch(`${server.url}/oauth/backchannel-logout`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(token === undefined ? {} : { logout_token: token }).toString(),
  });
}

/** What `/api/v1/auth/me` answers for the session token: 200 while the session lives. */
export async function meStatus(server: OAuthTestServer, sessionToken: string): Promise<number> {
  return (await fetch(`${server.url}/api/v1/auth/me`, { headers: { authorization: `Bearer ${sessionToken}` } })).status;
}

/** The PM user's portal account (created on first use, as the first SSO does) and a live SSO portal session from the PM session. */
export async function insertPortalSession(db: CommonQueryMethods, pmUserId: string, pmSessionId: string, portalRoles: string[] = []): Promise<{ portalUserId: string; portalSessionId: string }> {
  const portalUserId = await db.oneFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO portal_users (pm_user_id, email, display_name, roles)
    SELECT id, email, display_name, ${sql.array(portalRoles, 'text')} FROM users WHERE id = ${pmUserId}
    ON CONFLICT (pm_user_id) DO UPDATE SET updated_at = now()
    RETURNING id`);
  const portalSessionId = await db.oneFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO portal_sessions (portal_user_id, token_hash, pm_session_id, roles_version, method, expires_at)
    SELECT ${portalUserId}, ${hashBearerValue(randomToken())}, ${pmSessionId}, roles_version, 'sso_token', now() + interval '1 hour'
    FROM users WHERE id = ${pmUserId}
    RETURNING id`);
  return { portalUserId, portalSessionId };
}

const auditRow = z.object({
  outcome: z.string(),
  actorType: z.string(),
  actorId: z.string().nullable(),
  userId: z.string().nullable(),
  clientId: z.string().nullable(),
  details: z.record(z.unknown()),
});
export type AuditRow = z.infer<typeof auditRow>;

export function auditRows(db: CommonQueryMethods, action: string): Promise<readonly AuditRow[]> {
  return db.any(sql.type(auditRow)`
    SELECT outcome, actor_type AS "actorType", actor_id AS "actorId", user_id AS "userId", client_id AS "clientId", details
    FROM audit_log WHERE action = ${action} ORDER BY id`);
}

/** Every audit row's text, to check that a secret never reached the log. */
export async function allAuditText(db: CommonQueryMethods): Promise<string> {
  return (await db.anyFirst(sql.type(z.object({ row: z.string() }))`SELECT row_to_json(a)::text AS row FROM audit_log a`)).join('\n');
}
