import { randomUUID } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose';
import type { SigningKey } from '../oauth-server/signing-keys';

/**
 * The one-time SSO token of the PM app's "Open Reality Portal" button: a JWT the authorization server
 * signs with its keys (`typ: sso+jwt`, so it is never mistaken for an access token or an id_token), for
 * the portal's client id only, alive SSO_TOKEN_TTL_SECONDS, carrying ids and nothing personal. The
 * portal verifies it against the api-server's JWKS and redeems its `jti` once (sso_token_redemptions).
 * The button's token is bound to the browser that asked for it (`bnd`, platform/sso/browser-binding.ts);
 * the token exchange's (POST /api/v1/sso/token) is not, and only the JSON redemption takes it.
 */

export const SSO_TOKEN_JWT_TYPE = 'sso+jwt';
/** RFC 8693 section 3: what the exchange issues. */
export const ISSUED_TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
export const TOKEN_EXCHANGE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';

export interface SsoTokenClaims {
  iss: string;
  /** The PM user's id. */
  sub: string;
  /** The portal's client id. */
  aud: string;
  /** The PM session the token was asked for from. */
  sid: string;
  /** The browser the token is for: the SHA-256 of its binding cookie (the button's tokens only). */
  bnd?: string;
  jti: string;
  iat: number;
  exp: number;
}

export async function signSsoToken(
  key: SigningKey,
  claims: { issuer: string; audience: string; userId: string; sessionId: string; browserBinding?: string; lifetimeSeconds: number; now: Date },
): Promise<{ token: string; jti: string; expiresAt: Date }> {
  const iat = Math.floor(claims.now.getTime() / 1000);
  const jti = randomUUID();
  const token = await new SignJWT({ sid: claims.sessionId, ...(claims.browserBinding !== undefined ? { bnd: claims.browserBinding } : {}) })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: SSO_TOKEN_JWT_TYPE })
    .setIssuer(claims.issuer)
    .setSubject(claims.userId)
    .setAudience(claims.audience)
    .setJti(jti)
    .setIssuedAt(iat)
    .setExpirationTime(iat + claims.lifetimeSeconds)
    .sign(key.privateKey);
  return { token, jti, expiresAt: new Date((iat + claims.lifetimeSeconds) * 1000) };
}

/** Why a token was refused; audited as the `reason` of SsoTokenRejected. */
export type SsoTokenRejection = 'malformed' | 'bad_signature' | 'expired' | 'wrong_audience' | 'wrong_issuer' | 'wrong_type';

export type SsoTokenVerification = { ok: true; claims: SsoTokenClaims } | { ok: false; reason: SsoTokenRejection };

/** Checks signature, type, issuer, audience and lifetime; the single use is the redeemer's (a database insert). */
export async function verifySsoToken(
  token: string,
  keys: JWTVerifyGetKey,
  expected: { issuer: string; audience: string; now?: Date },
): Promise<SsoTokenVerification> {
  try {
    const { payload } = await jwtVerify(token, keys, {
      issuer: expected.issuer,
      audience: expected.audience,
      typ: SSO_TOKEN_JWT_TYPE,
      algorithms: ['RS256'],
      requiredClaims: ['sub', 'sid', 'jti', 'iat', 'exp'],
      ...(expected.now ? { currentDate: expected.now } : {}),
    });
    if (typeof payload.sid !== 'string' || typeof payload.jti !== 'string' || Array.isArray(payload.aud)) return { ok: false, reason: 'malformed' };
    if (payload.bnd !== undefined && typeof payload.bnd !== 'string') return { ok: false, reason: 'malformed' };
    return { ok: true, claims: payload as unknown as SsoTokenClaims };
  } catch (error) {
    return { ok: false, reason: joseRejection(error) };
  }
}

/**
 * jose's error for a refused JWT as one of our reasons. A key set that could not be fetched (JWKSTimeout,
 * a network error) is not a refusal: it is rethrown, so the caller answers with a transient error.
 */
export function joseRejection(error: unknown): SsoTokenRejection {
  if (error instanceof joseErrors.JWKSTimeout || !(error instanceof joseErrors.JOSEError)) throw error;
  if (error instanceof joseErrors.JWTExpired) return 'expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'aud') return 'wrong_audience';
    if (error.claim === 'iss') return 'wrong_issuer';
    if (error.claim === 'typ') return 'wrong_type';
    return 'malformed';
  }
  if (
    error instanceof joseErrors.JWSSignatureVerificationFailed ||
    error instanceof joseErrors.JWKSNoMatchingKey ||
    error instanceof joseErrors.JOSEAlgNotAllowed
  ) {
    return 'bad_signature';
  }
  return 'malformed';
}
