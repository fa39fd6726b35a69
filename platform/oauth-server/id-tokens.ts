import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { joseRejection, type SsoTokenRejection } from '../sso/sso-tokens';
import type { SigningKey, SigningKeys } from './signing-keys';

/**
 * OpenID Connect Core 1.0 id_tokens (section 2), signed RS256 with the authorization server's keys and
 * typed `JWT`, so none of our other JWTs (at+jwt, sso+jwt, logout+jwt) passes for one. Profile and email
 * claims are not in it (section 5.4: with an access token they come from userinfo).
 */

export const ID_TOKEN_TYPE = 'JWT';
/** The only way anyone signs in to the PM app: email and password. */
export const PASSWORD_ACR = 'urn:pm-app:acr:password';
const PASSWORD_AMR = ['pwd'];

export interface IdTokenClaims {
  iss: string;
  sub: string;
  aud: string;
  exp: number;
  iat: number;
  /** When the PM session signed in (epoch seconds). */
  auth_time?: number;
  nonce?: string;
  /** The PM session: what back-channel and RP-initiated logout name. */
  sid?: string;
  amr: string[];
  acr: string;
}

export interface IdTokenInput {
  issuer: string;
  clientId: string;
  userId: string;
  /** Only from an authorization request; never on a refresh (Core section 12.2). */
  nonce: string | null;
  sessionId: string | null;
  /** Epoch ms. */
  authTime: number | null;
  now: Date;
  lifetimeSeconds: number;
}

export async function signIdToken(key: SigningKey, input: IdTokenInput): Promise<string> {
  const iat = Math.floor(input.now.getTime() / 1000);
  const claims = {
    amr: PASSWORD_AMR,
    acr: PASSWORD_ACR,
    ...(input.authTime !== null ? { auth_time: Math.floor(input.authTime / 1000) } : {}),
    ...(input.nonce !== null ? { nonce: input.nonce } : {}),
    ...(input.sessionId !== null ? { sid: input.sessionId } : {}),
  };
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: ID_TOKEN_TYPE })
    .setIssuer(input.issuer)
    .setSubject(input.userId)
    .setAudience(input.clientId)
    .setIssuedAt(iat)
    .setExpirationTime(iat + input.lifetimeSeconds)
    .sign(key.privateKey);
}

/** What an id_token_hint says: whose token, for which client, about which session. */
export interface IdTokenHint {
  sub: string;
  clientId: string;
  sid: string | undefined;
}

export type IdTokenHintCheck = { ok: true; hint: IdTokenHint } | { ok: false; reason: SsoTokenRejection };

/**
 * Checks an id_token_hint: ours (signature, issuer, type), expired or not. RP-initiated logout comes
 * after the id_token has expired as often as not (Core section 3.1.2.1, RP-Initiated Logout section 2),
 * so expiry is tolerated for `acceptExpiredSeconds` (the longest a PM session lives: an older hint names
 * a session that has ended anyway). A key set that cannot be read is thrown (a transient fault).
 */
export async function verifyIdTokenHint(
  token: string,
  keys: SigningKeys,
  expected: { issuer: string; acceptExpiredSeconds: number; now: Date },
): Promise<IdTokenHintCheck> {
  const verify = async (fresh: boolean) =>
    jwtVerify(token, await keys.verificationKeys({ fresh }), {
      issuer: expected.issuer,
      typ: ID_TOKEN_TYPE,
      algorithms: ['RS256'],
      currentDate: expected.now,
      clockTolerance: expected.acceptExpiredSeconds,
      requiredClaims: ['sub', 'aud', 'iat', 'exp'],
    });
  try {
    let payload;
    try {
      ({ payload } = await verify(false));
    } catch (error) {
      // Another process may have rotated the keys since this one cached them.
      if (!(error instanceof joseErrors.JWKSNoMatchingKey)) throw error;
      ({ payload } = await verify(true));
    }
    const audience = Array.isArray(payload.aud) ? (payload.aud.length === 1 ? payload.aud[0] : undefined) : payload.aud;
    if (typeof payload.sub !== 'string' || typeof audience !== 'string' || (payload.sid !== undefined && typeof payload.sid !== 'string')) {
      return { ok: false, reason: 'malformed' };
    }
    return { ok: true, hint: { sub: payload.sub, clientId: audience, sid: payload.sid as string | undefined } };
  } catch (error) {
    return { ok: false, reason: joseRejection(error) };
  }
}
