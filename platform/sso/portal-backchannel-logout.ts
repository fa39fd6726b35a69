import { endSsoSessionsOfLogout } from '../../db/queries/portal-sessions';
import type { AuditEntry } from '../audit';
import type { ApiServerTokenContext } from './api-server-token-context';
import { UUID } from '../uuid';
import { auditPortalSessionEnd } from '../portal/sessions';
import { isLogoutTokenReceived, recordLogoutTokenReceipt, unverifiedClaims, verifyLogoutToken, type LogoutTokenRejection } from './logout-tokens';

export type PmLogoutOutcome = { ok: true; endedSessions: number } | { ok: false; reason: LogoutTokenRejection };

export interface PmLogoutContext extends ApiServerTokenContext {
  /** SSO_LOGOUT_TOKEN_TTL_SECONDS: the most a logout token may have aged. */
  logoutTokenSeconds: number;
}

/**
 * The portal's side of OpenID Connect Back-Channel Logout 1.0 (section 2.8), for logout tokens the
 * api-server's SSO session workflow sends when a PM session ends: the token is validated (section 2.6),
 * a jti already received is refused, the portal sessions it names end (those of the PM session `sid`,
 * or every SSO session of the PM user `sub` when it names only `sub`), and only then is the jti
 * recorded, in the same transaction, so a delivery retried after a failure is still honoured. A token
 * naming no live session is a success: the logout has happened. Refusals are audited as
 * SsoLogoutTokenRejected; a key set that cannot be fetched or a database fault is thrown (503: the
 * sender retries).
 */
export async function receivePmLogoutToken(context: PmLogoutContext, token: string, origin: NonNullable<AuditEntry['origin']>): Promise<PmLogoutOutcome> {
  const { db, audit, issuer, clientId } = context;
  const verified = await verifyLogoutToken(token, context.keys, { issuer, audience: clientId, maxAgeSeconds: context.logoutTokenSeconds, now: context.now() });
  const reject = async (reason: LogoutTokenRejection, claims: { iss?: string; sub?: string; sid?: string }) => {
    await audit.record({
      action: 'SsoLogoutTokenRejected',
      outcome: 'failure',
      actor: { type: 'client', id: issuer },
      ...(claims.sub && UUID.test(claims.sub) ? { userId: claims.sub } : {}),
      clientId,
      origin,
      details: { reason, receiver: 'reality-server', ...claims },
    });
    return { ok: false as const, reason };
  };
  if (!verified.ok) return reject(verified.reason, unverifiedClaims(token));
  const { claims } = verified;
  const named = { ...(claims.sid ? { sid: claims.sid } : {}), ...(claims.sub ? { sub: claims.sub } : {}) };
  if (await isLogoutTokenReceived(db, 'reality-server', claims.jti)) return reject('replayed', { iss: claims.iss, ...named });

  const endedSessions = await db.transaction(async (transaction) => {
    // A sid or sub that is not one of our ids names no session of ours.
    const ours = Object.values(named).every((id) => UUID.test(id));
    const ended = ours ? await endSsoSessionsOfLogout(transaction, named, 'pm_logout') : [];
    for (const session of ended) {
      await auditPortalSessionEnd(audit, session, 'pm_logout', { actor: { type: 'client', id: issuer }, origin, within: transaction });
    }
    await recordLogoutTokenReceipt(transaction, 'reality-server', claims, context.logoutTokenSeconds);
    return ended.length;
  });
  return { ok: true, endedSessions };
}
