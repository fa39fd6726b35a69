import type { DatabasePool } from 'slonik';
import { clearLoginFailures, lockLogin, reserveLoginAttempt } from '../db/queries/login-failures';
import type { UserRow } from '../db/queries/users';
import type { AuditEntry, AuditLog } from './audit';
import { verifyUserPassword } from './users';

export interface LoginAttempt {
  email: string;
  password: string;
  origin: NonNullable<AuditEntry['origin']>;
}

export interface LoginSettings {
  maxFailures: number;
  lockoutSeconds: number;
}

export type LoginOutcome = { ok: true; user: UserRow } | { ok: false; reason: 'invalid_credentials' | 'locked' | 'disabled' };

/** People type passwords into the email field: anything that is not shaped like an address is not recorded. */
function auditableEmail(email: string): string {
  return /^[^\s@]{1,64}@[^\s@]{1,255}$/.test(email) ? email : '[not an email address]';
}

/**
 * Email + password sign-in with lockout, shared by the JSON login and the HTML login page.
 * After `maxFailures` failures for one email (within `lockoutSeconds` of each other) the email is
 * locked for `lockoutSeconds`: even the right password is refused, with the same answer as a wrong
 * one. The attempt is counted before its password is checked (reserveLoginAttempt), so parallel
 * requests get no more than `maxFailures` guesses evaluated. The password is always verified (also
 * for unknown or locked emails), so timing tells nothing.
 * A disabled user (users.disabled_at) is refused with the same answer as a wrong password.
 * Audits UserLogin, UserLoginFailed (every refusal) and UserLoginLocked (once, when the lock engages);
 * never the password.
 */
export async function attemptLogin(db: DatabasePool, audit: AuditLog, settings: LoginSettings, attempt: LoginAttempt): Promise<LoginOutcome> {
  const email = attempt.email.trim();
  const slot = await reserveLoginAttempt(db, email, settings);
  // Verified even when refused: a locked email answers as slowly as any other.
  const verified = await verifyUserPassword(db, email, attempt.password);
  const user: UserRow | null = verified && { id: verified.id, email: verified.email, displayName: verified.displayName };
  const actor = { type: 'user' as const, ...(user ? { id: user.id } : {}) };
  const userId = user ? { userId: user.id } : {};

  if (!slot.allowed) {
    await audit.record({ action: 'UserLoginFailed', outcome: 'failure', actor, ...userId, origin: attempt.origin, details: { email: auditableEmail(email), reason: 'locked' } });
    return { ok: false, reason: 'locked' };
  }
  if (verified?.disabled) {
    // The right password of a disabled account: refused like a wrong one, recorded as what it is.
    await audit.record({ action: 'UserLoginFailed', outcome: 'failure', actor, ...userId, origin: attempt.origin, details: { email: auditableEmail(email), reason: 'disabled' } });
    return { ok: false, reason: 'disabled' };
  }
  if (user) {
    await clearLoginFailures(db, email);
    await audit.record({ action: 'UserLogin', outcome: 'success', actor, userId: user.id, origin: attempt.origin });
    return { ok: true, user };
  }
  await db.transaction(async (transaction) => {
    // The failure itself was counted by the reservation; only the last slot's failure engages the lock.
    const lockedNow = slot.last && (await lockLogin(transaction, email, settings));
    await audit.record({ action: 'UserLoginFailed', outcome: 'failure', actor, origin: attempt.origin, details: { email: auditableEmail(email), reason: 'invalid_credentials' } }, transaction);
    if (lockedNow) {
      await audit.record(
        { action: 'UserLoginLocked', outcome: 'failure', actor, origin: attempt.origin, details: { email: auditableEmail(email), lockedForSeconds: settings.lockoutSeconds } },
        transaction,
      );
    }
  });
  return { ok: false, reason: 'invalid_credentials' };
}
