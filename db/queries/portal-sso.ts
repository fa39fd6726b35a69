import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

export type PmSessionStanding = 'live' | 'ended' | 'user_disabled';

/**
 * Whether the PM session an SSO sign-in names is live (not revoked, not expired, used within
 * `idleSeconds`) and belongs to this PM user, who is not disabled. The user and session rows stay
 * share-locked until the caller's transaction ends: a logout or disablement committed meanwhile waits,
 * and then finds the portal session this sign-in creates.
 *
 * Lock order, everywhere: users, then user_sessions, then portal_sessions (disableUser takes them in
 * that order). Hence two statements: one SELECT … FOR SHARE OF s, u would lock in the plan's order.
 */
export async function lockPmSessionForSso(
  db: CommonQueryMethods,
  pmSessionId: string,
  pmUserId: string,
  idleSeconds: number,
): Promise<PmSessionStanding> {
  const disabled = await db.maybeOneFirst(sql.type(z.object({ disabled: z.boolean() }))`
    SELECT disabled_at IS NOT NULL AS disabled FROM users WHERE id = ${pmUserId} FOR SHARE`);
  if (disabled === null) return 'ended';
  const live = await db.maybeOneFirst(sql.type(z.object({ live: z.boolean() }))`
    SELECT revoked_at IS NULL AND expires_at > now() AND last_seen_at > now() - make_interval(secs => ${idleSeconds}) AS live
    FROM user_sessions WHERE id = ${pmSessionId} AND user_id = ${pmUserId}
    FOR SHARE`);
  if (live === null) return 'ended';
  if (disabled) return 'user_disabled';
  return live ? 'live' : 'ended';
}

/**
 * Consumes an SSO token's jti. False when it was redeemed before: the primary key decides, and a
 * concurrent redemption of the same jti waits for this transaction and then finds it taken.
 */
export async function recordSsoTokenRedemption(db: CommonQueryMethods, redemption: { jti: string; pmUserId: string; expiresAt: Date }): Promise<boolean> {
  const recorded = await db.maybeOneFirst(sql.type(z.object({ jti: z.string() }))`
    INSERT INTO sso_token_redemptions (jti, user_id, expires_at)
    VALUES (${redemption.jti}, ${redemption.pmUserId}, ${sql.timestamp(redemption.expiresAt)})
    ON CONFLICT (jti) DO NOTHING
    RETURNING jti`);
  return recorded !== null;
}
