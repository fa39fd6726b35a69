import { sql, type CommonQueryMethods, type DatabasePool } from 'slonik';
import { z } from 'zod';

export interface LoginFailureSettings {
  maxFailures: number;
  lockoutSeconds: number;
}

/** Whose logins the counters are for: the PM users' or the portal-only accounts' (an email may be both). */
export type LoginFailureLedger = 'user_login_failures' | 'portal_login_failures';

/** `allowed`: the password may be checked; `last`: this attempt took the final slot, so its failure engages the lock. */
export type LoginAttemptSlot = { allowed: true; last: boolean } | { allowed: false };

/**
 * Counts a login attempt for the email before its password is checked, so parallel attempts cannot
 * all slip past the lockout: the counter row is locked (upsert, then FOR UPDATE semantics of the
 * ON CONFLICT path) and the attempt is refused while the email is locked or its counter is already
 * at `maxFailures` (attempts still in flight count too). An allowed attempt counts as a failure
 * until a success clears the row (clearLoginFailures). Attempts older than `lockoutSeconds`, or from
 * before an expired lockout, no longer count.
 */
export async function reserveLoginAttempt(
  db: DatabasePool,
  email: string,
  settings: LoginFailureSettings,
  ledger: LoginFailureLedger = 'user_login_failures',
): Promise<LoginAttemptSlot> {
  return db.transaction(async (transaction) => {
    // Creates the row or, when it exists, locks it (a no-op update) and returns its latest committed state.
    const row = await transaction.one(sql.type(z.object({ failures: z.number(), stale: z.boolean(), locked: z.boolean() }))`
      INSERT INTO ${sql.identifier([ledger])} AS f (email, failures) VALUES (${email}, 0)
      ON CONFLICT (email) DO UPDATE SET failures = f.failures
      RETURNING f.failures,
        (f.locked_until IS NOT NULL AND f.locked_until <= now()) OR f.last_failure < now() - make_interval(secs => ${settings.lockoutSeconds}) AS stale,
        f.locked_until IS NOT NULL AND f.locked_until > now() AS locked`);
    if (row.locked || (!row.stale && row.failures >= settings.maxFailures)) return { allowed: false };
    const failures = row.stale ? 1 : row.failures + 1;
    await transaction.query(sql.unsafe`
      UPDATE ${sql.identifier([ledger])} SET failures = ${failures}, last_failure = now(), locked_until = NULL WHERE email = ${email}`);
    return { allowed: true, last: failures >= settings.maxFailures };
  });
}

/**
 * Engages the lock after the failure of the attempt that took the last slot. Returns true only when
 * this call engaged it (not when the row was cleared by a success meanwhile or is already locked).
 */
export async function lockLogin(
  db: CommonQueryMethods,
  email: string,
  settings: LoginFailureSettings,
  ledger: LoginFailureLedger = 'user_login_failures',
): Promise<boolean> {
  const locked = await db.maybeOneFirst(sql.type(z.object({ locked: z.boolean() }))`
    UPDATE ${sql.identifier([ledger])} SET locked_until = now() + make_interval(secs => ${settings.lockoutSeconds})
    WHERE email = ${email} AND failures >= ${settings.maxFailures} AND (locked_until IS NULL OR locked_until <= now())
    RETURNING true AS locked`);
  return locked ?? false;
}

export async function clearLoginFailures(db: CommonQueryMethods, email: string, ledger: LoginFailureLedger = 'user_login_failures'): Promise<void> {
  await db.query(sql.unsafe`DELETE FROM ${sql.identifier([ledger])} WHERE email = ${email}`);
}
