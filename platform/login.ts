import type { CommonQueryMethods, DatabasePool } from 'slonik';
import { clearLoginFailures, lockLogin, reserveLoginAttempt, type LoginFailureLedger } from '../db/queries/login-failures';
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

export type LoginRefusal = 'invalid_credentials' | 'locked' | 'disabled';

export type LoginOutcome<Account> = { ok: true; account: Account } | { ok: false; reason: LoginRefusal };

/** An audit row of a login attempt; the attempt's origin is added to it. */
type LoginAuditEntry = Omit<AuditEntry, 'origin'>;

/**
 * Whose accounts a sign-in is for: where their passwords and their failure counters are, and how an
 * attempt is audited. `details.email` is already fit for the audit log.
 */
export interface LoginAccounts<Account> {
  failureLedger: LoginFailureLedger;
  /** The account when the password matches; with an unknown email, as slow as with a known one. */
  verifyPassword(db: CommonQueryMethods, email: string, password: string): Promise<{ account: Account; disabled: boolean } | null>;
  /** A refusal; `account` only when the password was right (the account is locked or disabled). */
  refused(account: Account | null, details: { email: string; reason: LoginRefusal }): LoginAuditEntry;
  /** The failure that engaged the lock, recorded once, after its own refusal. */
  lockEngaged(details: { email: string; lockedForSeconds: number }): LoginAuditEntry;
  /** null: the caller records the sign-in, with what it starts. */
  accepted(account: Account): LoginAuditEntry | null;
}

/** PM users: UserLogin, UserLoginFailed (every refusal) and UserLoginLocked. */
export const PM_USER_ACCOUNTS: LoginAccounts<UserRow> = {
  failureLedger: 'user_login_failures',
  async verifyPassword(db, email, password) {
    const verified = await verifyUserPassword(db, email, password);
    return verified && { account: { id: verified.id, email: verified.email, displayName: verified.displayName }, disabled: verified.disabled };
  },
  refused: (user, details) => ({ action: 'UserLoginFailed', outcome: 'failure', actor: { type: 'user', ...(user ? { id: user.id } : {}) }, ...(user ? { userId: user.id } : {}), details }),
  lockEngaged: (details) => ({ action: 'UserLoginLocked', outcome: 'failure', actor: { type: 'user' }, details }),
  accepted: (user) => ({ action: 'UserLogin', outcome: 'success', actor: { type: 'user', id: user.id }, userId: user.id }),
};

/** People type passwords into the email field: anything that is not shaped like an address is not recorded. */
function auditableEmail(email: string): string {
  return /^[^\s@]{1,64}@[^\s@]{1,255}$/.test(email) ? email : '[not an email address]';
}

/**
 * Email + password sign-in with lockout, for PM users (the JSON login and the HTML login page) and the
 * portal-only accounts alike, each counted in its own ledger.
 * After `maxFailures` failures for one email (within `lockoutSeconds` of each other) the email is
 * locked for `lockoutSeconds`: even the right password is refused, with the same answer as a wrong
 * one. The attempt is counted before its password is checked (reserveLoginAttempt), so parallel
 * requests get no more than `maxFailures` guesses evaluated. The password is always verified (also
 * for unknown or locked emails), so timing tells nothing.
 * A disabled account is refused with the same answer as a wrong password.
 * Every refusal is audited, and the lock once when it engages; never the password.
 */
export async function attemptLogin<Account>(
  db: DatabasePool,
  audit: AuditLog,
  accounts: LoginAccounts<Account>,
  settings: LoginSettings,
  attempt: LoginAttempt,
): Promise<LoginOutcome<Account>> {
  const email = attempt.email.trim();
  const { origin } = attempt;
  const slot = await reserveLoginAttempt(db, email, settings, accounts.failureLedger);
  // Verified even when refused: a locked email answers as slowly as any other.
  const verified = await accounts.verifyPassword(db, email, attempt.password);
  const account = verified?.account ?? null;

  if (!slot.allowed) {
    await audit.record({ ...accounts.refused(account, { email: auditableEmail(email), reason: 'locked' }), origin });
    return { ok: false, reason: 'locked' };
  }
  if (verified?.disabled) {
    // The right password of a disabled account: refused like a wrong one, recorded as what it is.
    await audit.record({ ...accounts.refused(account, { email: auditableEmail(email), reason: 'disabled' }), origin });
    return { ok: false, reason: 'disabled' };
  }
  if (verified) {
    await clearLoginFailures(db, email, accounts.failureLedger);
    const accepted = accounts.accepted(verified.account);
    if (accepted) await audit.record({ ...accepted, origin });
    return { ok: true, account: verified.account };
  }
  await db.transaction(async (transaction) => {
    // The failure itself was counted by the reservation; only the last slot's failure engages the lock.
    const lockedNow = slot.last && (await lockLogin(transaction, email, settings, accounts.failureLedger));
    await audit.record({ ...accounts.refused(null, { email: auditableEmail(email), reason: 'invalid_credentials' }), origin }, transaction);
    if (lockedNow) {
      await audit.record({ ...accounts.lockEngaged({ email: auditableEmail(email), lockedForSeconds: settings.lockoutSeconds }), origin }, transaction);
    }
  });
  return { ok: false, reason: 'invalid_credentials' };
}
