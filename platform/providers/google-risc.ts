import { createHash } from 'node:crypto';
import { createRemoteJWKSet, errors, jwtVerify } from 'jose';
import { z } from 'zod';
import { secretsEqual } from '../secrets';

/**
 * Google Cross-Account Protection (RISC): security event tokens (RFC 8417 SETs) that Google POSTs when
 * something happened to a user's Google account. Verified against Google's published keys; they carry
 * no `exp`, so a token is applied once by its `jti` and refused once its `iat` is older than the
 * configured maximum age.
 */

/** Google's clock and ours may differ a little; an `iat` this far ahead is not yet suspicious. */
const CLOCK_SKEW_SECONDS = 60;

const RISC_EVENT = 'https://schemas.openid.net/secevent/risc/event-type/';
const OAUTH_EVENT = 'https://schemas.openid.net/secevent/oauth/event-type/';

/** Events after which our grant is gone or must be treated as compromised: the user consents again. */
const INVALIDATING_EVENTS: ReadonlyMap<string, string> = new Map([
  [`${OAUTH_EVENT}token-revoked`, 'token-revoked'],
  [`${OAUTH_EVENT}tokens-revoked`, 'tokens-revoked'],
  [`${RISC_EVENT}sessions-revoked`, 'sessions-revoked'],
  [`${RISC_EVENT}account-disabled`, 'account-disabled'],
  [`${RISC_EVENT}account-credential-change-required`, 'account-credential-change-required'],
]);

const subjectClaim = z.object({
  subject_type: z.string().max(64).optional(),
  sub: z.string().min(1).max(255).optional(),
  token_type: z.string().max(64).optional(),
  token_identifier_alg: z.string().max(64).optional(),
  token: z.string().min(1).max(1024).optional(),
});
export type SecurityEventSubject = z.infer<typeof subjectClaim>;

const securityEventClaims = z.object({
  jti: z.string().min(1).max(255),
  iat: z.number(),
  events: z.record(z.string().max(255), z.object({ subject: subjectClaim.optional(), reason: z.string().max(255).optional() })),
});

export interface SecurityEvent {
  /** Short name (`token-revoked`, …) of an event that invalidates our grant; undefined for the others (verification, account-enabled). */
  invalidates: string | undefined;
  subject: SecurityEventSubject | undefined;
  reason: string | undefined;
}

export interface SecurityEventToken {
  jti: string;
  issuedAt: Date;
  events: SecurityEvent[];
}

/** RFC 8935 section 2.4 error codes, named after the check that failed. */
export type SecurityEventRejection = 'invalid_request' | 'invalid_key' | 'invalid_issuer' | 'invalid_audience';

export class SecurityEventRejected extends Error {
  override name = 'SecurityEventRejected';

  constructor(
    readonly code: SecurityEventRejection,
    message: string,
    /** Which check refused a token that was otherwise well formed (for the audit row). */
    readonly check?: 'too_old',
  ) {
    super(message);
  }
}

/** Verifies a SET: RS256 by one of Google's keys, our issuer setting, our client id as audience, not too old. */
export function createSecurityEventVerifier(
  risc: { issuer: string; jwksUrl: string; maxTokenAgeSeconds: number },
  clientId: string,
): (token: string) => Promise<SecurityEventToken> {
  const googleKeys = createRemoteJWKSet(new URL(risc.jwksUrl));
  return async (token) => {
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, googleKeys, {
        issuer: risc.issuer,
        audience: clientId,
        algorithms: ['RS256'],
        requiredClaims: ['jti', 'iat'],
        maxTokenAge: risc.maxTokenAgeSeconds,
        clockTolerance: CLOCK_SKEW_SECONDS,
      }));
    } catch (error) {
      if (error instanceof errors.JWTExpired && error.claim === 'iat') {
        throw new SecurityEventRejected('invalid_request', `the security event token was issued more than ${risc.maxTokenAgeSeconds} seconds ago`, 'too_old');
      }
      throw rejection(error) ?? error;
    }
    const claims = securityEventClaims.safeParse(payload);
    if (!claims.success) throw new SecurityEventRejected('invalid_request', 'the security event token has no readable jti or events claim');
    return {
      jti: claims.data.jti,
      issuedAt: new Date(claims.data.iat * 1000),
      events: Object.entries(claims.data.events).map(([type, event]) => ({ invalidates: INVALIDATING_EVENTS.get(type), subject: event.subject, reason: event.reason })),
    };
  };
}

/** jose's verdicts in RFC 8935 terms; anything else (Google's keys unreachable) is our failure, not the sender's. */
function rejection(error: unknown): SecurityEventRejected | undefined {
  if (error instanceof errors.JWTClaimValidationFailed) {
    const code = error.claim === 'iss' ? 'invalid_issuer' : error.claim === 'aud' ? 'invalid_audience' : 'invalid_request';
    return new SecurityEventRejected(code, `the security event token's ${error.claim} claim is not acceptable`);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys || error instanceof errors.JOSEAlgNotAllowed) {
    return new SecurityEventRejected('invalid_key', 'the security event token is not signed by one of Google\'s keys');
  }
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid || error instanceof errors.JOSENotSupported || error instanceof errors.JWTExpired) {
    return new SecurityEventRejected('invalid_request', 'the body is not a usable signed JWT');
  }
  return undefined;
}

/**
 * Whether a token subject (token-revoked) names this refresh token. Google identifies it by its first
 * 16 characters or by base64(SHA-512(SHA-512(token))).
 */
export function subjectNamesRefreshToken(subject: SecurityEventSubject, refreshToken: string): boolean {
  if (subject.subject_type !== 'oauth_token' || subject.token_type !== 'refresh_token' || subject.token === undefined) return false;
  if (subject.token_identifier_alg === 'prefix') return secretsEqual(subject.token, refreshToken.slice(0, 16));
  if (subject.token_identifier_alg === 'hash_base64_sha512_sha512') {
    const inner = createHash('sha512').update(refreshToken, 'utf8').digest();
    return secretsEqual(subject.token, createHash('sha512').update(inner).digest('base64'));
  }
  return false;
}
