import { sql, type CommonQueryMethods } from 'slonik';

/**
 * Rows that no request can use any more, each with the condition that makes it so. They are kept a
 * day past that point (for support questions and audits in progress), then deleted; the audit log
 * keeps what happened. Deleting expired authorizations also drops their encrypted verifiers. Replay
 * guards tell support nothing and go soon after their token could no longer be accepted.
 */
const EXPIRED_RECORDS = {
  integration_authorizations: sql.fragment`expires_at < now() - interval '1 day'`,
  oauth_authorization_requests: sql.fragment`expires_at < now() - interval '1 day'`,
  oauth_authorization_codes: sql.fragment`expires_at < now() - interval '1 day'`,
  oauth_access_tokens: sql.fragment`expires_at < now() - interval '1 day'`,
  oauth_refresh_tokens: sql.fragment`expires_at < now() - interval '1 day'`,
  // Ended or expired, whichever came first (LEAST ignores a null ended_at). Before user_sessions, whose
  // deletion would otherwise first set these sessions' pm_session_id to null.
  portal_sessions: sql.fragment`LEAST(ended_at, expires_at) < now() - interval '1 day'`,
  user_sessions: sql.fragment`expires_at < now() - interval '1 day' OR revoked_at < now() - interval '1 day'`,
  user_login_failures: sql.fragment`last_failure < now() - interval '1 day' AND (locked_until IS NULL OR locked_until < now())`,
  portal_login_failures: sql.fragment`last_failure < now() - interval '1 day' AND (locked_until IS NULL OR locked_until < now())`,
  // Replay guards: past expires_at the token they guard is refused as expired (or too old) anyway; the
  // hour covers a server whose clock lags the database's.
  sso_token_redemptions: sql.fragment`expires_at < now() - interval '1 hour'`,
  backchannel_logout_receipts: sql.fragment`expires_at < now() - interval '1 hour'`,
  // Providers redeliver for hours, not weeks: a month of delivery ids catches every duplicate. It also
  // outlasts GOOGLE_RISC_MAX_TOKEN_AGE_SECONDS (at most a day), past which a security event is refused
  // anyway, as integration_authorizations' day past expiry outlasts it for the event's iat check.
  webhook_deliveries: sql.fragment`received_at < now() - interval '30 days'`,
} as const;

export type HousekeepingCounts = Record<keyof typeof EXPIRED_RECORDS, number>;

/**
 * Deletes the expired rows, and first wipes every rotation-grace envelope (a voice refresh token's
 * successor pair, oauth_refresh_tokens.successor_response_enc) whose grace has passed: no request can
 * use it any more, and the secret it holds should not outlive that.
 */
export async function deleteExpiredRecords(db: CommonQueryMethods): Promise<HousekeepingCounts> {
  await db.query(sql.unsafe`
    UPDATE oauth_refresh_tokens SET successor_response_enc = NULL, successor_response_expires_at = NULL
    WHERE successor_response_enc IS NOT NULL AND successor_response_expires_at < now()`);
  const counts = {} as HousekeepingCounts;
  for (const table of Object.keys(EXPIRED_RECORDS) as Array<keyof typeof EXPIRED_RECORDS>) {
    const result = await db.query(sql.unsafe`DELETE FROM ${sql.identifier([table])} WHERE ${EXPIRED_RECORDS[table]}`);
    counts[table] = result.rowCount;
  }
  return counts;
}
