import { sql, type CommonQueryMethods, type FragmentSqlToken } from 'slonik';
import { z } from 'zod';
import { passingOnLostLockRace } from '../transient-faults';
import { LAST_SEEN_PRECISION_SECONDS } from './users';

/** Live portal sessions that began with SSO from one of these PM sessions. */
export function livePortalSessionsOfPmSessions(db: CommonQueryMethods, pmSessionIds: readonly string[]): Promise<readonly string[]> {
  if (pmSessionIds.length === 0) return Promise.resolve([]);
  return db.anyFirst(sql.type(z.object({ id: z.string() }))`
    SELECT id FROM portal_sessions WHERE pm_session_id = ANY(${sql.array([...pmSessionIds], 'uuid')}) AND ended_at IS NULL`);
}

/** Live SSO portal sessions of the portal account linked to this PM user. */
export function livePortalSessionsOfPmUser(db: CommonQueryMethods, pmUserId: string): Promise<readonly string[]> {
  return db.anyFirst(sql.type(z.object({ id: z.string() }))`
    SELECT ps.id FROM portal_sessions ps JOIN portal_users pu ON pu.id = ps.portal_user_id
    WHERE pu.pm_user_id = ${pmUserId} AND ps.ended_at IS NULL AND ps.pm_session_id IS NOT NULL`);
}

const portalSessionMethod = z.enum(['sso_token', 'oidc', 'password']);
export type PortalSessionMethod = z.infer<typeof portalSessionMethod>;

/** Why a portal session ended (portal_sessions.ended_reason); `replaced`: a new sign-in in the same browser. */
export type PortalSessionEndReason = 'logout' | 'pm_logout' | 'pm_session_ended' | 'user_disabled' | 'idle' | 'expired' | 'replaced';

/**
 * Starts a portal session. An SSO session (`pmSessionId` set) lives until its own lifetime or the PM
 * session's expiry, whichever comes first; `expiresAt` is computed by the database, whose clock every
 * check of the session uses.
 */
export function insertPortalSession(
  db: CommonQueryMethods,
  session: { portalUserId: string; tokenHash: string; method: PortalSessionMethod; pmSessionId: string | null; lifetimeSeconds: number },
): Promise<{ id: string; expiresAt: number }> {
  return db.one(sql.type(z.object({ id: z.string(), expiresAt: z.number() }))`
    INSERT INTO portal_sessions (portal_user_id, token_hash, method, pm_session_id, expires_at)
    SELECT ${session.portalUserId}::uuid, ${session.tokenHash}, ${session.method}, ${session.pmSessionId}::uuid,
      LEAST(now() + make_interval(secs => ${session.lifetimeSeconds}), (SELECT expires_at FROM user_sessions WHERE id = ${session.pmSessionId}::uuid))
    RETURNING id, expires_at AS "expiresAt"`);
}

const requestSessionRow = z.object({
  id: z.string(),
  method: portalSessionMethod,
  expiresAt: z.number(),
  pmSessionId: z.string().nullable(),
  workflowStartedAt: z.number().nullable(),
  portalUserId: z.string(),
  pmUserId: z.string().nullable(),
  email: z.string(),
  displayName: z.string(),
  roles: z.array(z.string()),
  /** Why the session must end now; null while it is live. */
  endReason: z.enum(['pm_session_ended', 'user_disabled', 'idle', 'expired']).nullable(),
  /** The PM user's roles changed since the session's roles were applied. */
  rolesStale: z.boolean(),
  /** This request wrote last_seen_at (it does so at most once a minute). */
  touched: z.boolean(),
});
export type PortalRequestSession = z.infer<typeof requestSessionRow>;

/**
 * Session sync on every portal request, in one statement: the unended portal session of this token with
 * its account, and for an SSO session the PM session it came from and the PM user. It says why the
 * session must end (PM user disabled, PM session revoked, expired or gone, the portal
 * session expired, or the pair idle: neither session used within `idleSeconds`) and whether the PM
 * roles moved on. A live session is marked as used, and so is its PM session: using the portal is
 * using the pair, so the PM app does not sign the user out while they work in the portal.
 *
 * Lock order, as everywhere: the PM session's row before the portal session's (disableUser locks the
 * user, then ends the PM sessions, then the portal sessions). A data-modifying WITH runs in no set
 * order, so touched_portal waits for touched_pm by reading it. The statement runs alone, outside any
 * transaction: should it still lose a deadlock to one of ours, the request is asked to retry (503).
 */
export function findPortalRequestSession(db: CommonQueryMethods, tokenHash: string, idleSeconds: number): Promise<PortalRequestSession | null> {
  return passingOnLostLockRace(() => db.maybeOne(sql.type(requestSessionRow)`
    WITH found AS (
      SELECT ps.id, ps.method, ps.expires_at, ps.pm_session_id, ps.workflow_started_at, ps.last_seen_at, ps.roles_version,
        pu.id AS portal_user_id, pu.pm_user_id, pu.email::text AS email, pu.display_name, pu.roles,
        CASE
          WHEN u.disabled_at IS NOT NULL THEN 'user_disabled'
          WHEN ps.method <> 'password' AND (s.id IS NULL OR s.revoked_at IS NOT NULL OR s.expires_at <= now()) THEN 'pm_session_ended'
          WHEN ps.expires_at <= now() THEN 'expired'
          WHEN GREATEST(ps.last_seen_at, s.last_seen_at) <= now() - make_interval(secs => ${idleSeconds}) THEN 'idle'
        END AS end_reason,
        pu.pm_user_id IS NOT NULL AND ps.roles_version IS DISTINCT FROM u.roles_version AS roles_stale,
        s.last_seen_at AS pm_last_seen_at
      FROM portal_sessions ps
      JOIN portal_users pu ON pu.id = ps.portal_user_id
      LEFT JOIN user_sessions s ON s.id = ps.pm_session_id
      LEFT JOIN users u ON u.id = pu.pm_user_id
      WHERE ps.token_hash = ${tokenHash} AND ps.ended_at IS NULL
    ), touched_pm AS (
      UPDATE user_sessions SET last_seen_at = now()
      WHERE id IN (SELECT pm_session_id FROM found WHERE end_reason IS NULL AND pm_last_seen_at < now() - make_interval(secs => ${LAST_SEEN_PRECISION_SECONDS}))
      RETURNING id
    ), touched_portal AS (
      UPDATE portal_sessions SET last_seen_at = now()
      WHERE id IN (SELECT id FROM found WHERE end_reason IS NULL AND last_seen_at < now() - make_interval(secs => ${LAST_SEEN_PRECISION_SECONDS}))
        AND (SELECT count(*) FROM touched_pm) >= 0
      RETURNING id
    )
    SELECT id, method, expires_at AS "expiresAt", pm_session_id AS "pmSessionId", workflow_started_at AS "workflowStartedAt",
      portal_user_id AS "portalUserId", pm_user_id AS "pmUserId", email, display_name AS "displayName", roles,
      end_reason AS "endReason", roles_stale AS "rolesStale", EXISTS (SELECT 1 FROM touched_portal) AS touched
    FROM found`));
}

const endedSessionRow = z.object({
  id: z.string(),
  method: portalSessionMethod,
  portalUserId: z.string(),
  pmUserId: z.string().nullable(),
  pmSessionId: z.string().nullable(),
});
export type EndedPortalSession = z.infer<typeof endedSessionRow>;

/** The columns of endedSessionRow, from `portal_sessions ps` joined with `portal_users pu`. */
const ENDED_COLUMNS = sql.fragment`ps.id, ps.method, ps.portal_user_id AS "portalUserId", pu.pm_user_id AS "pmUserId", ps.pm_session_id AS "pmSessionId"`;

/** Ends the unended sessions the condition (on `portal_sessions ps`, `portal_users pu`) names; the rows this call ended. */
function endPortalSessionsWhere(db: CommonQueryMethods, condition: FragmentSqlToken, reason: PortalSessionEndReason): Promise<readonly EndedPortalSession[]> {
  return db.any(sql.type(endedSessionRow)`
    UPDATE portal_sessions ps SET ended_at = now(), ended_reason = ${reason}
    FROM portal_users pu
    WHERE pu.id = ps.portal_user_id AND ps.ended_at IS NULL AND ${condition}
    RETURNING ${ENDED_COLUMNS}`);
}

/** Ends the session unless it has ended already; only the call that ended it gets the row (and audits). */
export async function endPortalSession(db: CommonQueryMethods, id: string, reason: PortalSessionEndReason): Promise<EndedPortalSession | null> {
  return (await endPortalSessionsWhere(db, sql.fragment`ps.id = ${id}`, reason))[0] ?? null;
}

/**
 * Locks the PM session the unended portal session of this token came from (none for a portal-only
 * session), until the transaction ends: a sign-out that ends both takes the PM session first, the
 * order every path takes (disableUser, portal requests, the SSO session workflow).
 */
export async function lockPmSessionOfPortalToken(db: CommonQueryMethods, tokenHash: string): Promise<void> {
  await db.query(sql.unsafe`
    SELECT 1 FROM user_sessions
    WHERE id = (SELECT pm_session_id FROM portal_sessions WHERE token_hash = ${tokenHash} AND ended_at IS NULL)
    FOR NO KEY UPDATE`);
}

/** Ends the unended session of this token (sign-out); the row when this call ended it. */
export async function endPortalSessionOfToken(db: CommonQueryMethods, tokenHash: string, reason: PortalSessionEndReason): Promise<EndedPortalSession | null> {
  return (await endPortalSessionsWhere(db, sql.fragment`ps.token_hash = ${tokenHash}`, reason))[0] ?? null;
}

/**
 * Ends the SSO sessions a back-channel logout token names: those of the PM session `sid` (and of the
 * PM user `sub` when the token names both), or every SSO session of the PM user when it names only `sub`.
 * Both are ids of ours (UUIDs); the caller has checked their shape.
 */
export function endSsoSessionsOfLogout(
  db: CommonQueryMethods,
  target: { sid?: string | undefined; sub?: string | undefined },
  reason: PortalSessionEndReason,
): Promise<readonly EndedPortalSession[]> {
  if (!target.sid && !target.sub) throw new Error('a logout names a PM session, a PM user, or both');
  const bySession = target.sid ? sql.fragment`ps.pm_session_id = ${target.sid}` : sql.fragment`ps.pm_session_id IS NOT NULL`;
  const byUser = target.sub ? sql.fragment`pu.pm_user_id = ${target.sub}` : sql.fragment`true`;
  return endPortalSessionsWhere(db, sql.fragment`${bySession} AND ${byUser}`, reason);
}

/**
 * Ends the unended portal sessions of the PM user's portal account at once (a disabled user loses the
 * portal without waiting for a request or a workflow); answers them, to be audited, and their SSO
 * session workflows told.
 */
export function endPortalSessionsOfPmUser(db: CommonQueryMethods, pmUserId: string, reason: PortalSessionEndReason): Promise<readonly EndedPortalSession[]> {
  return endPortalSessionsWhere(db, sql.fragment`pu.pm_user_id = ${pmUserId}`, reason);
}

/** The session's SSO session workflow has been started (or found running). */
export async function markSsoSessionWorkflowStarted(db: CommonQueryMethods, id: string): Promise<void> {
  await db.query(sql.unsafe`UPDATE portal_sessions SET workflow_started_at = now() WHERE id = ${id} AND workflow_started_at IS NULL`);
}
