import { randomUUID } from 'node:crypto';
import { decodeJwt, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose';
import { sql, type CommonQueryMethods } from 'slonik';
import type { SigningKey } from '../oauth-server/signing-keys';
import { joseRejection, type SsoTokenRejection } from './sso-tokens';

/**
 * OpenID Connect Back-Channel Logout 1.0 logout tokens, both directions: the api-server's (signed with
 * the authorization server's keys, to the portal) and the portal's (signed with the reality-server's
 * keys, to the api-server). Section 2.4: `iss`, `aud`, `iat`, `exp`, `jti`, `events` with the back-channel
 * logout member, `sid` and/or `sub`, never a `nonce`; `typ: logout+jwt` (section 2.4 recommends it).
 */

export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
export const LOGOUT_TOKEN_JWT_TYPE = 'logout+jwt';

export type LogoutReceiver = 'api-server' | 'reality-server';

export interface LogoutTokenClaims {
  iss: string;
  aud: string;
  iat: number;
  exp: number;
  jti: string;
  events: Record<string, unknown>;
  sid?: string;
  sub?: string;
}

/** `lifetimeSeconds`: SSO_LOGOUT_TOKEN_TTL_SECONDS, the token's `exp` after its `iat`. */
export async function signLogoutToken(
  key: SigningKey,
  claims: { issuer: string; audience: string; sessionId?: string; subject?: string; now: Date; lifetimeSeconds: number },
): Promise<{ token: string; jti: string }> {
  if (!claims.sessionId && !claims.subject) throw new Error('a logout token names a session (sid), a subject (sub), or both');
  const iat = Math.floor(claims.now.getTime() / 1000);
  const jti = randomUUID();
  const jwt = new SignJWT({ events: { [BACKCHANNEL_LOGOUT_EVENT]: {} }, ...(claims.sessionId ? { sid: claims.sessionId } : {}) })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: LOGOUT_TOKEN_JWT_TYPE })
    .setIssuer(claims.issuer)
    .setAudience(claims.audience)
    .setJti(jti)
    .setIssuedAt(iat)
    .setExpirationTime(iat + claims.lifetimeSeconds);
  if (claims.subject) jwt.setSubject(claims.subject);
  return { token: await jwt.sign(key.privateKey), jti };
}

export type LogoutTokenRejection = SsoTokenRejection | 'nonce_present' | 'events_missing' | 'sub_and_sid_missing' | 'replayed';

export type LogoutTokenVerification = { ok: true; claims: LogoutTokenClaims } | { ok: false; reason: LogoutTokenRejection };

/**
 * Section 2.6 validation, except the replay check (the receiver's, with isLogoutTokenReceived before it
 * acts and recordLogoutTokenReceipt after its sessions have ended). The `typ` header is not required:
 * section 2.4 only recommends it. A token older than `maxAgeSeconds` (SSO_LOGOUT_TOKEN_TTL_SECONDS) is
 * refused (section 2.6 step 5: a recent `iat`).
 */
export async function verifyLogoutToken(
  token: string,
  keys: JWTVerifyGetKey,
  expected: { issuer: string; audience: string; maxAgeSeconds: number; now?: Date },
): Promise<LogoutTokenVerification> {
  let payload;
  try {
    ({ payload } = await jwtVerify(token, keys, {
      issuer: expected.issuer,
      audience: expected.audience,
      algorithms: ['RS256'],
      // Back-Channel Logout 1.0 (final) section 2.4 makes exp required; a token without one is malformed.
      requiredClaims: ['iat', 'exp', 'jti'],
      maxTokenAge: expected.maxAgeSeconds,
      ...(expected.now ? { currentDate: expected.now } : {}),
    }));
  } catch (error) {
    return { ok: false, reason: joseRejection(error) };
  }
  if ('nonce' in payload) return { ok: false, reason: 'nonce_present' };
  const events = payload.events;
  if (typeof events !== 'object' || events === null || Array.isArray(events) || !(BACKCHANNEL_LOGOUT_EVENT in events)) {
    return { ok: false, reason: 'events_missing' };
  }
  const sid = typeof payload.sid === 'string' && payload.sid !== '' ? payload.sid : undefined;
  const sub = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : undefined;
  if (!sid && !sub) return { ok: false, reason: 'sub_and_sid_missing' };
  if (typeof payload.jti !== 'string' || Array.isArray(payload.aud)) return { ok: false, reason: 'malformed' };
  return { ok: true, claims: payload as unknown as LogoutTokenClaims };
}

/** The unverified claims of a token that failed verification, for the audit row only (never trusted). */
export function unverifiedClaims(token: string): { iss?: string; sub?: string; sid?: string } {
  try {
    const claims = decodeJwt(token);
    const text = (value: unknown) => (typeof value === 'string' ? value.slice(0, 200) : undefined);
    return Object.fromEntries(Object.entries({ iss: text(claims.iss), sub: text(claims.sub), sid: text(claims.sid) }).filter(([, value]) => value !== undefined));
  } catch {
    return {};
  }
}

export async function isLogoutTokenReceived(db: CommonQueryMethods, receiver: LogoutReceiver, jti: string): Promise<boolean> {
  const row = await db.maybeOneFirst(sql.unsafe`SELECT 1 FROM backchannel_logout_receipts WHERE receiver = ${receiver} AND jti = ${jti}`);
  return row !== null;
}

/**
 * Recorded once the sessions the token names have ended; a concurrent duplicate is harmless (same
 * outcome). Kept until the token is too old to be accepted anyway (`maxAgeSeconds` after its `iat`).
 */
export async function recordLogoutTokenReceipt(db: CommonQueryMethods, receiver: LogoutReceiver, claims: LogoutTokenClaims, maxAgeSeconds: number): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO backchannel_logout_receipts (receiver, jti, expires_at)
    VALUES (${receiver}, ${claims.jti}, ${sql.timestamp(new Date((claims.iat + maxAgeSeconds) * 1000))})
    ON CONFLICT DO NOTHING`);
}
