import type { JWTVerifyGetKey } from 'jose';
import type { DatabasePool } from 'slonik';
import type { AuditEntry, AuditLog } from '../audit';
import { unverifiedClaims } from './logout-tokens';
import { auditSsoRejection, signInWithPmSession, type SsoSignInRejection, type SsoSession, type SsoSignInSettings } from './portal-sign-in';
import { verifySsoToken, type SsoTokenRejection } from './sso-tokens';

export type SsoRedemptionRejection = SsoTokenRejection | SsoSignInRejection;

export type SsoRedemption = { ok: true; session: SsoSession; pmUserId: string; pmSessionId: string } | { ok: false; reason: SsoRedemptionRejection };

export interface SsoRedemptionContext {
  db: DatabasePool;
  audit: AuditLog;
  /** The api-server's keys (platform/sso/api-server-keys.ts). */
  keys: JWTVerifyGetKey;
  now: () => Date;
  /** The api-server's issuer, and the portal's client id (the token's audience). */
  issuer: string;
  clientId: string;
  settings: SsoSignInSettings;
}

/**
 * Redeems the PM app's one-time SSO token: verified against the api-server's keys (signature, `typ`,
 * issuer, audience = the portal's client id, lifetime), then signInWithPmSession. Every refusal is
 * audited as SsoTokenRejected with its reason; a key set that cannot be fetched or a database fault is
 * thrown, so the caller answers 503 and the user may try again.
 */
export async function redeemSsoToken(context: SsoRedemptionContext, token: string, origin: NonNullable<AuditEntry['origin']>): Promise<SsoRedemption> {
  const { db, audit, keys, issuer, clientId } = context;
  const verified = await verifySsoToken(token, keys, { issuer, audience: clientId, now: context.now() });
  if (!verified.ok) {
    const claims = unverifiedClaims(token);
    await auditSsoRejection(audit, { method: 'sso_token', reason: verified.reason, clientId, origin, pmUserId: claims.sub, pmSessionId: claims.sid });
    return { ok: false, reason: verified.reason };
  }
  const { sub, sid, jti, exp } = verified.claims;
  const signedIn = await signInWithPmSession(db, audit, context.settings, {
    method: 'sso_token',
    pmUserId: sub,
    pmSessionId: sid,
    redemption: { jti, expiresAt: new Date(exp * 1000) },
    clientId,
    origin,
  });
  return signedIn.ok ? { ok: true, session: signedIn.session, pmUserId: sub, pmSessionId: sid } : signedIn;
}
