import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { hashBearerValue } from '../../platform/secrets';

export interface BenchUser {
  userId: string;
  sessionToken: string;
}

export interface ConnectAttempt {
  userId: string;
  /** Date.now() as the callback request left the driver. */
  callbackSentAt: number;
  callbackAnsweredAt: number;
  status: number;
  connectionId?: string;
  error?: string;
}

const SEED_BATCH = 1000;
const SESSION_SECONDS = 24 * 3600;

/**
 * Users and live sessions written directly, as login would leave them (the session row holds the
 * token's hash): hashing a password per user would take longer than the bench itself.
 */
export async function seedUsers(db: pg.Pool, prefix: string, count: number): Promise<BenchUser[]> {
  const users: BenchUser[] = [];
  for (let offset = 0; offset < count; offset += SEED_BATCH) {
    const size = Math.min(SEED_BATCH, count - offset);
    const emails = Array.from({ length: size }, (_, i) => `${prefix}-${offset + i}@bench.example`);
    const tokens = emails.map(() => randomBytes(32).toString('base64url'));
    const { rows } = await db.query<{ id: string; email: string }>(
      `INSERT INTO users (email, display_name, password_hash)
       SELECT email, split_part(email, '@', 1), 'bench-user-without-password' FROM unnest($1::text[]) AS email
       RETURNING id, email::text AS email`,
      [emails],
    );
    const idByEmail = new Map(rows.map((row) => [row.email, row.id]));
    const userIds = emails.map((email) => idByEmail.get(email)!);
    await db.query(
      `INSERT INTO user_sessions (user_id, token_hash, expires_at)
       SELECT user_id, token_hash, now() + make_interval(secs => $3) FROM unnest($1::uuid[], $2::text[]) AS s(user_id, token_hash)`,
      [userIds, tokens.map(hashBearerValue), SESSION_SECONDS],
    );
    users.push(...userIds.map((userId, i) => ({ userId, sessionToken: tokens[i]! })));
  }
  return users;
}

/**
 * What a browser does, as test/helpers/platform.ts `connectGoogleCalendar`: our auth endpoint, the
 * (fake) Google consent, which approves at once, and our callback, all with the user's session.
 */
export async function connectGoogleCalendar(apiUrl: string, user: BenchUser): Promise<ConnectAttempt> {
  const authorization = { authorization: `Bearer ${user.sessionToken}` };
  const failed = (error: string): ConnectAttempt => ({ userId: user.userId, callbackSentAt: Date.now(), callbackAnsweredAt: Date.now(), status: 0, error });
  const auth = await fetch(`${apiUrl}/api/v1/integrations/google-calendar/auth`, { headers: authorization, redirect: 'manual' });
  if (auth.status !== 302) return failed(`auth answered ${auth.status}: ${await auth.text()}`);
  const consent = await fetch(auth.headers.get('location')!, { redirect: 'manual' });
  if (consent.status !== 302) return failed(`fake Google answered ${consent.status}: ${await consent.text()}`);
  const callbackSentAt = Date.now();
  const callback = await fetch(consent.headers.get('location')!, { headers: authorization });
  const body = (await callback.json().catch(() => ({}))) as { connectionId?: string; message?: string; error?: string };
  return {
    userId: user.userId,
    callbackSentAt,
    callbackAnsweredAt: Date.now(),
    status: callback.status,
    ...(body.connectionId ? { connectionId: body.connectionId } : {}),
    ...(callback.status === 202 ? {} : { error: `callback answered ${callback.status}: ${body.error ?? ''} ${body.message ?? ''}` }),
  };
}

/** Every user connected, at most `concurrency` at a time; a failed request is recorded, not thrown. */
export async function connectAll(apiUrl: string, users: BenchUser[], concurrency: number): Promise<ConnectAttempt[]> {
  const attempts: ConnectAttempt[] = [];
  let next = 0;
  const lane = async () => {
    while (next < users.length) {
      const user = users[next++]!;
      attempts.push(await connectGoogleCalendar(apiUrl, user).catch((error: unknown) => ({
        userId: user.userId, callbackSentAt: Date.now(), callbackAnsweredAt: Date.now(), status: 0, error: String(error),
      })));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, users.length) }, lane));
  return attempts;
}
