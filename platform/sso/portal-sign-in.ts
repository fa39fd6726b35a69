import type { DatabasePool } from 'slonik';
import { lockPmSessionForSso, recordSsoTokenRedemption } from '../../db/queries/portal-sso';
import { upsertLinkedPortalUser, type PortalUserRow } from '../../db/queries/portal-users';
import type { AuditEntry, AuditLog } from '../audit';
import { UUID } from '../uuid';
import { startPortalSession } from '../portal/sessions';
import { applyMappedPortalRoles } from './portal-roles';

/** Why an SSO sign-in with a verified token was refused (audited as the `reason` of SsoTokenRejected). */
export type SsoSignInRejection = 'replayed' | 'pm_session_ended' | 'user_disabled' | 'malformed';

export interface SsoSignInRequest {
  /** 'sso_token': the PM app's button (one-time token); 'oidc': the authorization code flow. */
  method: 'sso_token' | 'oidc';
  pmUserId: string;
  pmSessionId: string;
  /** The id_token's auth_time (epoch seconds): when the user signed in to the PM app. */
  authTime?: number;
  /** The one-time token's jti and expiry, consumed by this sign-in. */
  redemption?: { jti: string; expiresAt: Date };
  clientId: string;
  origin: NonNullable<AuditEntry['origin']>;
}

export interface SsoSession {
  token: string;
  id: string;
  expiresAt: Date;
  user: PortalUserRow;
  roles: string[];
}

export type SsoSignIn = { ok: true; session: SsoSession } | { ok: false; reason: SsoSignInRejection };

export interface SsoSignInSettings {
  /** PORTAL_SESSION_TTL_SECONDS; the session also ends with the PM session. */
  portalSessionSeconds: number;
  /** SESSION_IDLE_SECONDS: a PM session unused this long cannot open the portal. */
  idleSeconds: number;
}

class Refused extends Error {
  constructor(readonly reason: SsoSignInRejection) {
    super(reason);
  }
}

/**
 * Opens a portal session for a PM user whose identity a verified SSO token or id_token vouches for, in
 * one transaction: the token's jti is consumed (once, even under concurrent redemption), the PM session
 * must be live and the PM user enabled, the portal account is found by the PM user's id or created, the
 * mapped roles are applied, and SsoLogin is audited. A refusal changes nothing and is audited as
 * SsoTokenRejected with its reason; a transient fault is thrown (the caller answers 503).
 */
export async function signInWithPmSession(db: DatabasePool, audit: AuditLog, settings: SsoSignInSettings, request: SsoSignInRequest): Promise<SsoSignIn> {
  const { method, pmUserId, pmSessionId, redemption, clientId, origin } = request;
  try {
    // Ids of ours are UUIDs; anything else in a validly signed token is malformed, not a database error.
    const ids = [pmUserId, pmSessionId, ...(redemption ? [redemption.jti] : [])];
    if (!ids.every((id) => UUID.test(id))) throw new Refused('malformed');
    const session = await db.transaction(async (transaction) => {
      const standing = await lockPmSessionForSso(transaction, pmSessionId, pmUserId, settings.idleSeconds);
      if (standing === 'user_disabled') throw new Refused('user_disabled');
      if (standing === 'ended') throw new Refused('pm_session_ended');
      if (redemption && !(await recordSsoTokenRedemption(transaction, { jti: redemption.jti, pmUserId, expiresAt: redemption.expiresAt }))) {
        throw new Refused('replayed');
      }
      const user = await upsertLinkedPortalUser(transaction, pmUserId);
      const started = await startPortalSession(transaction, { portalUserId: user.id, method, pmSessionId, lifetimeSeconds: settings.portalSessionSeconds });
      const applied = await applyMappedPortalRoles(transaction, audit, pmUserId, 'sso_login');
      const roles = applied?.roles ?? user.roles;
      await audit.record(
        {
          action: 'SsoLogin',
          outcome: 'success',
          actor: { type: 'user', id: pmUserId },
          userId: pmUserId,
          clientId,
          origin,
          details: {
            method,
            sid: pmSessionId,
            portalUserId: user.id,
            portalSessionId: started.id,
            roles,
            ...(request.authTime !== undefined ? { authTime: request.authTime } : {}),
          },
        },
        transaction,
      );
      return { ...started, user: { ...user, roles }, roles };
    });
    return { ok: true, session };
  } catch (error) {
    if (!(error instanceof Refused)) throw error;
    await auditSsoRejection(audit, { method, reason: error.reason, clientId, origin, pmUserId, pmSessionId });
    return { ok: false, reason: error.reason };
  }
}

/** One SsoTokenRejected row: the reason, and whatever is known of client, user and PM session (never the token). */
export async function auditSsoRejection(
  audit: AuditLog,
  rejection: { method: 'sso_token' | 'oidc'; reason: string; clientId?: string; origin: NonNullable<AuditEntry['origin']>; pmUserId?: string; pmSessionId?: string },
): Promise<void> {
  const pmUserId = rejection.pmUserId && UUID.test(rejection.pmUserId) ? rejection.pmUserId : undefined;
  await audit.record({
    action: 'SsoTokenRejected',
    outcome: 'failure',
    actor: { type: 'user', ...(pmUserId ? { id: pmUserId } : {}) },
    ...(pmUserId ? { userId: pmUserId } : {}),
    ...(rejection.clientId ? { clientId: rejection.clientId } : {}),
    origin: rejection.origin,
    details: { method: rejection.method, reason: rejection.reason, ...(rejection.pmSessionId ? { sid: rejection.pmSessionId.slice(0, 200) } : {}) },
  });
}
