import { errors as joseErrors, type JWTVerifyGetKey } from 'jose';
import type { DatabasePool } from 'slonik';
import { endPmSessions } from '../../db/queries/pm-sessions';
import type { AuditEntry, AuditLog } from '../audit';
import type { SigningKeys } from '../oauth-server/signing-keys';
import { UUID } from '../uuid';
import {
  isLogoutTokenReceived,
  recordLogoutTokenReceipt,
  unverifiedClaims,
  verifyLogoutToken,
  type LogoutTokenRejection,
} from './logout-tokens';

export interface PortalLogoutReceiver {
  db: DatabasePool;
  audit: AuditLog;
  /** The reality-server's keys (owner 'reality-server'): the worker signs the portal's logout tokens with them. */
  portalKeys: SigningKeys;
  /** The portal's public URL: the `iss` of its logout tokens. */
  portalIssuer: string;
  /** The portal's client id: the actor of the audit rows. */
  portalClientId: string;
  /** The api-server's issuer: the `aud` of the portal's logout tokens. */
  audience: string;
  /** SSO_LOGOUT_TOKEN_TTL_SECONDS: the most a logout token may have aged. */
  logoutTokenSeconds: number;
  clock: () => Date;
}

export type PortalLogoutOutcome =
  | { ok: true; endedPmSessionIds: string[] }
  | { ok: false; reason: LogoutTokenRejection; description: string };

const DESCRIPTIONS: Record<LogoutTokenRejection, string> = {
  malformed: 'the logout token is not a well-formed logout token',
  bad_signature: "the logout token is not signed with one of the Reality Portal's keys",
  expired: 'the logout token has expired',
  wrong_audience: 'the logout token is not addressed to this server',
  wrong_issuer: 'the logout token was not issued by the Reality Portal',
  wrong_type: 'the logout token has the wrong type',
  nonce_present: 'a logout token must not carry a nonce',
  events_missing: 'the logout token lacks the back-channel logout event',
  sub_and_sid_missing: 'the logout token names neither a session (sid) nor a subject (sub)',
  replayed: 'the logout token was already received',
};

/**
 * The portal's key set, read again once when a token names a kid the cached set lacks (the worker may
 * have created or rotated the portal's key since). A failure to read the keys is thrown, not a refusal.
 */
function portalKeySet(keys: SigningKeys): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await (await keys.verificationKeys())(header, token);
    } catch (error) {
      if (!(error instanceof joseErrors.JWKSNoMatchingKey)) throw error;
      return (await keys.verificationKeys({ fresh: true }))(header, token);
    }
  };
}

/**
 * The api-server's side of Back-Channel Logout 1.0 (section 2.8) in the reverse direction: the portal's
 * logout token ends the PM session it names (`sid`; with `sub` as well, only when it is that user's),
 * or with `sub` alone every live PM session of that user (section 2.7). An unknown or ended session is
 * no error. Refusals (and replays) are audited as SsoLogoutTokenRejected with the token's unverified
 * `iss`, `sub` and `sid`. The end of the sessions, their SsoLogout row and the receipt of the `jti` commit
 * together: a delivery that failed before the commit is honoured when retried, a replay after it is not.
 * The caller tells the SSO session workflows of the other portal sessions of `endedPmSessionIds` after
 * the commit (the one that sent the token is already ending).
 */
export async function receivePortalLogoutToken(
  receiver: PortalLogoutReceiver,
  token: string,
  origin: NonNullable<AuditEntry['origin']>,
): Promise<PortalLogoutOutcome> {
  const actor = { type: 'client', id: receiver.portalClientId } as const;
  const reject = async (reason: LogoutTokenRejection): Promise<PortalLogoutOutcome> => {
    await receiver.audit.record({ action: 'SsoLogoutTokenRejected', outcome: 'failure', actor, origin, details: { reason, ...unverifiedClaims(token) } });
    return { ok: false, reason, description: DESCRIPTIONS[reason] };
  };

  const verification = await verifyLogoutToken(token, portalKeySet(receiver.portalKeys), {
    issuer: receiver.portalIssuer,
    audience: receiver.audience,
    maxAgeSeconds: receiver.logoutTokenSeconds,
    now: receiver.clock(),
  });
  if (!verification.ok) return reject(verification.reason);
  const { claims } = verification;
  if (await isLogoutTokenReceived(receiver.db, 'api-server', claims.jti)) return reject('replayed');

  // Ids that are not UUIDs name no PM session or user of ours.
  const named = (value: string | undefined) => value === undefined || UUID.test(value);
  const ended = await receiver.db.transaction(async (transaction) => {
    const sessions =
      named(claims.sid) && named(claims.sub)
        ? await endPmSessions(transaction, { ...(claims.sid ? { sessionId: claims.sid } : {}), ...(claims.sub ? { userId: claims.sub } : {}) }, 'portal_logout')
        : [];
    const userId = sessions[0]?.userId;
    // A session the portal's sign-out already ended has its row from there: one SsoLogout per session ended.
    if (userId) await receiver.audit.record(
      {
        action: 'SsoLogout',
        outcome: 'success',
        actor,
        ...(userId ? { userId } : {}),
        clientId: receiver.portalClientId,
        origin,
        details: { initiatedBy: 'portal', sid: claims.sid ?? null, jti: claims.jti, pmSessionsEnded: sessions.length, pmSessionIds: sessions.map((session) => session.id) },
      },
      transaction,
    );
    await recordLogoutTokenReceipt(transaction, 'api-server', claims, receiver.logoutTokenSeconds);
    return sessions;
  });
  return { ok: true, endedPmSessionIds: ended.map((session) => session.id) };
}
