import type { CommonQueryMethods, DatabasePool } from 'slonik';
import { endPmSessions } from '../../db/queries/pm-sessions';
import {
  endPortalSession,
  endPortalSessionOfToken,
  findPortalRequestSession,
  insertPortalSession,
  lockPmSessionOfPortalToken,
  type EndedPortalSession,
  type PortalSessionEndReason,
  type PortalSessionMethod,
} from '../../db/queries/portal-sessions';
import type { PortalUserRow } from '../../db/queries/portal-users';
import type { AuditEntry, AuditLog } from '../audit';
import { hashBearerValue, randomToken } from '../secrets';
import { applyMappedPortalRoles } from '../sso/portal-roles';

/** Who is signed in to the portal, as every signed-in route sees it. */
export interface PortalPrincipal {
  session: { id: string; method: PortalSessionMethod; expiresAt: Date; pmSessionId: string | null; workflowStartedAt: Date | null };
  user: { id: string; email: string; displayName: string; pmUserId: string | null };
  roles: string[];
}

/** The side or event that ended a pair; audited as `initiatedBy` (the SSO session workflow's words). */
const INITIATED_BY: Record<PortalSessionEndReason, string> = {
  logout: 'portal',
  pm_logout: 'pm',
  pm_session_ended: 'pm',
  user_disabled: 'user_disabled',
  idle: 'idle_expiry',
  expired: 'absolute_expiry',
  replaced: 'replaced',
};

export function portalActorId(portalUserId: string): string {
  return `portal:${portalUserId}`;
}

/** Creates a portal session; its token is returned once and stored only as its hash. */
export async function startPortalSession(
  db: CommonQueryMethods,
  session: { portalUserId: string; method: PortalSessionMethod; pmSessionId: string | null; lifetimeSeconds: number },
): Promise<{ token: string; id: string; expiresAt: Date }> {
  const token = randomToken();
  const { id, expiresAt } = await insertPortalSession(db, { ...session, tokenHash: hashBearerValue(token) });
  return { token, id, expiresAt: new Date(expiresAt) };
}

/** A portal-only account's password sign-in: the session and its PortalLogin row, together. */
export async function startPasswordSession(
  db: DatabasePool,
  audit: AuditLog,
  user: PortalUserRow,
  options: { lifetimeSeconds: number; origin: NonNullable<AuditEntry['origin']> },
): Promise<{ token: string; id: string; expiresAt: Date }> {
  return db.transaction(async (transaction) => {
    const session = await startPortalSession(transaction, { portalUserId: user.id, method: 'password', pmSessionId: null, lifetimeSeconds: options.lifetimeSeconds });
    await audit.record(
      {
        action: 'PortalLogin',
        outcome: 'success',
        actor: { type: 'user', id: portalActorId(user.id) },
        origin: options.origin,
        details: { method: 'password', portalUserId: user.id, portalSessionId: session.id },
      },
      transaction,
    );
    return session;
  });
}

/**
 * Records how a portal session ended: SsoLogout for a session that came from SSO, PortalLogout for a
 * portal-only one, each with the side that started it.
 */
export async function auditPortalSessionEnd(
  audit: AuditLog,
  ended: EndedPortalSession,
  reason: PortalSessionEndReason,
  context: { actor: AuditEntry['actor']; origin?: AuditEntry['origin']; within?: CommonQueryMethods },
): Promise<void> {
  await audit.record(
    {
      action: ended.method === 'password' ? 'PortalLogout' : 'SsoLogout',
      outcome: 'success',
      actor: context.actor,
      ...(ended.pmUserId ? { userId: ended.pmUserId } : {}),
      ...(context.origin ? { origin: context.origin } : {}),
      details: {
        initiatedBy: INITIATED_BY[reason],
        reason,
        method: ended.method,
        portalSessionId: ended.id,
        portalUserId: ended.portalUserId,
        ...(ended.pmSessionId ? { sid: ended.pmSessionId } : {}),
      },
    },
    context.within,
  );
}

/** Ends a session and audits it in one transaction; null when it had ended already (someone else audited). */
export async function endPortalSessionAudited(
  db: DatabasePool,
  audit: AuditLog,
  sessionId: string,
  reason: PortalSessionEndReason,
  context: { actor: AuditEntry['actor']; origin?: AuditEntry['origin'] },
): Promise<EndedPortalSession | null> {
  return db.transaction(async (transaction) => {
    const ended = await endPortalSession(transaction, sessionId, reason);
    if (ended) await auditPortalSessionEnd(audit, ended, reason, { ...context, within: transaction });
    return ended;
  });
}

/** Ends the session of this token, audited with the user as actor; null when the token names no unended session. */
async function endTokenSession(
  transaction: CommonQueryMethods,
  audit: AuditLog,
  tokenHash: string,
  reason: 'logout' | 'replaced',
  origin: NonNullable<AuditEntry['origin']>,
): Promise<EndedPortalSession | null> {
  const ended = await endPortalSessionOfToken(transaction, tokenHash, reason);
  if (ended) {
    const actor = { type: 'user' as const, id: ended.pmUserId ?? portalActorId(ended.portalUserId) };
    await auditPortalSessionEnd(audit, ended, reason, { actor, origin, within: transaction });
  }
  return ended;
}

/**
 * A new sign-in in the same browser ends the session the browser presented ('replaced'), audited, in
 * one transaction; null when the token names no unended session. Its PM session lives on.
 */
export async function replacePresentedPortalSession(
  db: DatabasePool,
  audit: AuditLog,
  token: string,
  origin: NonNullable<AuditEntry['origin']>,
): Promise<EndedPortalSession | null> {
  return db.transaction((transaction) => endTokenSession(transaction, audit, hashBearerValue(token), 'replaced', origin));
}

export interface SignedOutPortalSession extends EndedPortalSession {
  /** The sign-out ended the PM session it came from (false: there was none, or it had ended already). */
  pmSessionEnded: boolean;
}

/**
 * The portal sign-out: the session the browser presents ends ('logout'), and with an SSO session the
 * PM session it came from ends as well ('portal_logout'), so the PM app's very next request is refused,
 * whatever becomes of the back-channel logout the SSO session workflow still sends. Each end is audited
 * SsoLogout (initiatedBy portal; PortalLogout for a portal-only session) with the user as actor, all in
 * one transaction, which locks the PM session before the portal session, as every path does. Null when
 * the token names no unended session.
 */
export async function signOutPortalSession(
  db: DatabasePool,
  audit: AuditLog,
  token: string,
  origin: NonNullable<AuditEntry['origin']>,
): Promise<SignedOutPortalSession | null> {
  const tokenHash = hashBearerValue(token);
  return db.transaction(async (transaction) => {
    await lockPmSessionOfPortalToken(transaction, tokenHash);
    const ended = await endTokenSession(transaction, audit, tokenHash, 'logout', origin);
    if (!ended) return null;
    const [pmSession] = ended.pmSessionId ? await endPmSessions(transaction, { sessionId: ended.pmSessionId }, 'portal_logout') : [];
    if (pmSession) {
      await audit.record(
        {
          action: 'SsoLogout',
          outcome: 'success',
          actor: { type: 'user', id: pmSession.userId },
          userId: pmSession.userId,
          origin,
          details: { initiatedBy: INITIATED_BY.logout, reason: 'portal_logout', sid: pmSession.id, portalSessionId: ended.id },
        },
        transaction,
      );
    }
    return { ...ended, pmSessionEnded: pmSession !== undefined };
  });
}

export type PortalSessionSync =
  | { state: 'live'; principal: PortalPrincipal; touched: boolean }
  | { state: 'ended'; reason: Exclude<PortalSessionEndReason, 'logout' | 'pm_logout'> }
  | { state: 'absent' };

/**
 * Session sync (a), on every portal request: the session of this token is checked with the PM session it
 * came from (findPortalRequestSession). One that must end is ended here and audited (initiated by the PM
 * side, the disablement, or idle or absolute expiry); stale roles are mapped again before the request
 * goes on, so the page shows the PM user's new roles on the very next request.
 */
export async function syncPortalSession(db: DatabasePool, audit: AuditLog, token: string, idleSeconds: number): Promise<PortalSessionSync> {
  const found = await findPortalRequestSession(db, hashBearerValue(token), idleSeconds);
  if (!found) return { state: 'absent' };
  if (found.endReason) {
    await endPortalSessionAudited(db, audit, found.id, found.endReason, { actor: { type: 'system' } });
    return { state: 'ended', reason: found.endReason };
  }
  let roles = found.roles;
  if (found.rolesStale && found.pmUserId) {
    roles = (await applyMappedPortalRoles(db, audit, found.pmUserId, 'request'))?.roles ?? roles;
  }
  return {
    state: 'live',
    touched: found.touched,
    principal: {
      session: {
        id: found.id,
        method: found.method,
        expiresAt: new Date(found.expiresAt),
        pmSessionId: found.pmSessionId,
        workflowStartedAt: found.workflowStartedAt === null ? null : new Date(found.workflowStartedAt),
      },
      user: { id: found.portalUserId, email: found.email, displayName: found.displayName, pmUserId: found.pmUserId },
      roles: [...roles],
    },
  };
}
