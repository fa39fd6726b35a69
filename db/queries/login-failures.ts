import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/** True while the email is locked out (user_login_failures.locked_until in the future). */
export async function isLoginLocked(db: CommonQueryMethods, email: string): Promise<boolean> {
  const locked = await db.maybeOneFirst(sql.type(z.object({ locked: z.boolean() }))`
    SELECT locked_until IS NOT NULL AND locked_until > now() AS locked FROM user_login_failures WHERE email = ${email}`);
  return locked ?? false;
}

/**
 * Counts one failed login for the email. Failures older than `windowSeconds`, or from before an
 * expired lockout, no longer count. Returns true only for the call whose failure engaged the lock.
 * Run it inside a transaction: the row is locked so concurrent failures are counted one by one.
 */
export async function recordLoginFailure(
  db: CommonQueryMethods,
  email: string,
  settings: { maxFailures: number; lockoutSeconds: number },
): Promise<boolean> {
  await db.query(sql.unsafe`INSERT INTO user_login_failures (email, failures) VALUES (${email}, 0) ON CONFLICT (email) DO NOTHING`);
  const row = await db.one(sql.type(z.object({ failures: z.number(), locked: z.boolean() }))`
    WITH previous AS (
      SELECT email,
             (locked_until IS NOT NULL AND locked_until <= now()) OR last_failure < now() - make_interval(secs => ${settings.lockoutSeconds}) AS stale,
             locked_until IS NOT NULL AND locked_until > now() AS locked
      FROM user_login_failures WHERE email = ${email} FOR UPDATE
    )
    UPDATE user_login_failures AS f SET
      failures = CASE WHEN previous.stale THEN 1 ELSE f.failures + 1 END,
      last_failure = now(),
      locked_until = CASE
        WHEN previous.locked THEN f.locked_until
        WHEN (CASE WHEN previous.stale THEN 1 ELSE f.failures + 1 END) >= ${settings.maxFailures}
          THEN now() + make_interval(secs => ${settings.lockoutSeconds})
        ELSE NULL END
    FROM previous WHERE f.email = previous.email
    RETURNING f.failures, (NOT previous.locked AND f.locked_until IS NOT NULL) AS locked`);
  return row.locked;
}

export async function clearLoginFailures(db: CommonQueryMethods, email: string): Promise<void> {
  await db.query(sql.unsafe`DELETE FROM user_login_failures WHERE email = ${email}`);
}
