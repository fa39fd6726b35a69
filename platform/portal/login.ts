import type { DatabasePool } from 'slonik';
import { clearLoginFailures, lockLogin, reserveLoginAttempt } from '../../db/queries/login-failures';
import type { PortalUserRow } from '../../db/queries/portal-users';
import type { AuditEntry, AuditLog } from '../audit';
import type { LoginSettings } from '../login';
import { portalActorId } from './sessions';
import { verifyPortalUserPassword } from './users';

export type PortalLoginOutcome = { ok: true; user: PortalUserRow } | { ok: false; reason: 'invalid_credentials' | 'locked' };

/** People type passwords into the email field: anything that is not shaped like an address is not recorded. */
function auditableEmail(email: string): string {
  return /^[^\s@]{1,64}@[^\s@]{1,255}$/.test(email) ? email : '[not an email address]';
}

/**
 * Email + password sign-in of a portal-only account, with the PM login's lockout rules
 * (platform/login.ts) counted in the portal's own ledger: after `maxFailures` failures the email is
 * locked for `lockoutSeconds`, with the same answer as a wrong password, and the password is always
 * verified so timing tells nothing. Audits PortalLoginFailed (reason invalid_credentials or locked), never
 * the password; PortalLogin is the caller's, with the session it starts (platform/portal/sessions.ts).
 */
export async function attemptPortalLogin(
  db: DatabasePool,
  audit: AuditLog,
  settings: LoginSettings,
  attempt: { email: string; password: string; origin: NonNullable<AuditEntry['origin']> },
): Promise<PortalLoginOutcome> {
  const email = attempt.email.trim();
  const slot = await reserveLoginAttempt(db, email, settings, 'portal_login_failures');
  const user = await verifyPortalUserPassword(db, email, attempt.password);
  const actor = { type: 'user' as const, ...(user ? { id: portalActorId(user.id) } : {}) };
  const failure = (reason: 'invalid_credentials' | 'locked') => ({
    action: 'PortalLoginFailed' as const,
    outcome: 'failure' as const,
    actor,
    origin: attempt.origin,
    details: { email: auditableEmail(email), reason, ...(user ? { portalUserId: user.id } : {}) },
  });

  if (!slot.allowed) {
    await audit.record(failure('locked'));
    return { ok: false, reason: 'locked' };
  }
  if (user) {
    await clearLoginFailures(db, email, 'portal_login_failures');
    return { ok: true, user };
  }
  await db.transaction(async (transaction) => {
    const lockedNow = slot.last && (await lockLogin(transaction, email, settings, 'portal_login_failures'));
    await audit.record(failure('invalid_credentials'), transaction);
    if (lockedNow) {
      await audit.record({ ...failure('locked'), details: { email: auditableEmail(email), reason: 'locked', lockedForSeconds: settings.lockoutSeconds } }, transaction);
    }
  });
  return { ok: false, reason: 'invalid_credentials' };
}
