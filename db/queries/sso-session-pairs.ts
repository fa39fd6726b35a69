import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/**
 * An SSO pair: a portal session and the PM session (`sid`) it came from, as the SSO session workflow
 * sees them. Times are epoch milliseconds; an ended session's reason is its ended_reason.
 */
export interface SsoSessionPairIds {
  portalSessionId: string;
  pmSessionId: string;
  pmUserId: string;
}

const pairRow = z.object({
  portalFound: z.boolean(),
  portalEndedAt: z.number().nullable(),
  portalEndedReason: z.string().nullable(),
  portalLastSeenAt: z.number().nullable(),
  portalExpiresAt: z.number().nullable(),
  portalRolesVersion: z.number().int().nullable(),
  pmFound: z.boolean(),
  pmRevokedAt: z.number().nullable(),
  pmEndedReason: z.string().nullable(),
  pmLastSeenAt: z.number().nullable(),
  pmExpiresAt: z.number().nullable(),
  userFound: z.boolean(),
  userDisabledAt: z.number().nullable(),
  userRolesVersion: z.number().int().nullable(),
});
export type SsoSessionPairRow = z.infer<typeof pairRow>;

/** Both sessions and the PM user in one read; a row that is gone reads as not found. */
export function readSsoSessionPairRow(db: CommonQueryMethods, pair: SsoSessionPairIds): Promise<SsoSessionPairRow> {
  return db.one(sql.type(pairRow)`
    SELECT ps.id IS NOT NULL AS "portalFound", ps.ended_at AS "portalEndedAt", ps.ended_reason AS "portalEndedReason",
           ps.last_seen_at AS "portalLastSeenAt", ps.expires_at AS "portalExpiresAt", ps.roles_version AS "portalRolesVersion",
           us.id IS NOT NULL AS "pmFound", us.revoked_at AS "pmRevokedAt", us.ended_reason AS "pmEndedReason",
           us.last_seen_at AS "pmLastSeenAt", us.expires_at AS "pmExpiresAt",
           u.id IS NOT NULL AS "userFound", u.disabled_at AS "userDisabledAt", u.roles_version AS "userRolesVersion"
    FROM (SELECT 1) AS pair
    LEFT JOIN portal_sessions ps ON ps.id = ${pair.portalSessionId}
    LEFT JOIN user_sessions us ON us.id = ${pair.pmSessionId}
    LEFT JOIN users u ON u.id = ${pair.pmUserId}`);
}

const lockedSession = z.object({ lastSeenAt: z.number(), ended: z.boolean() });
export type LockedSession = z.infer<typeof lockedSession>;

/** The portal session, locked until the transaction ends (null when it is gone). */
export function lockPortalSession(transaction: CommonQueryMethods, portalSessionId: string): Promise<LockedSession | null> {
  return transaction.maybeOne(sql.type(lockedSession)`
    SELECT last_seen_at AS "lastSeenAt", ended_at IS NOT NULL AS ended FROM portal_sessions WHERE id = ${portalSessionId} FOR UPDATE`);
}

/** The PM session, locked until the transaction ends (null when it is gone). */
export function lockPmSession(transaction: CommonQueryMethods, pmSessionId: string): Promise<LockedSession | null> {
  return transaction.maybeOne(sql.type(lockedSession)`
    SELECT last_seen_at AS "lastSeenAt", revoked_at IS NOT NULL AS ended FROM user_sessions WHERE id = ${pmSessionId} FOR UPDATE`);
}

/** Ends a live portal session; whether this call ended it. */
export async function endLivePortalSession(db: CommonQueryMethods, portalSessionId: string, reason: string, at: Date): Promise<boolean> {
  const ended = await db.maybeOneFirst(sql.type(z.object({ id: z.string() }))`
    UPDATE portal_sessions SET ended_at = ${sql.timestamp(at)}, ended_reason = ${reason}
    WHERE id = ${portalSessionId} AND ended_at IS NULL
    RETURNING id`);
  return ended !== null;
}

/** Ends a live PM session (revoked_at, as a logout does); whether this call ended it. */
export async function revokeLivePmSession(db: CommonQueryMethods, pmSessionId: string, reason: string, at: Date): Promise<boolean> {
  const ended = await db.maybeOneFirst(sql.type(z.object({ id: z.string() }))`
    UPDATE user_sessions SET revoked_at = ${sql.timestamp(at)}, ended_reason = ${reason}
    WHERE id = ${pmSessionId} AND revoked_at IS NULL
    RETURNING id`);
  return ended !== null;
}

/** Whether this workflow has put the end of its pair on record already (a retried activity audits once). */
export async function isSsoLogoutAudited(db: CommonQueryMethods, pmUserId: string, workflowId: string): Promise<boolean> {
  const row = await db.maybeOneFirst(sql.type(z.object({ found: z.boolean() }))`
    SELECT true AS found FROM audit_log
    WHERE user_id = ${pmUserId} AND action = 'SsoLogout' AND details->>'workflowId' = ${workflowId}
    LIMIT 1`);
  return row !== null;
}
