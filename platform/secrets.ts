import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** An unguessable bearer value (OAuth state, session token): 256 bits, URL-safe. */
export function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Bearer values are stored only as this hash: a leaked table gives an attacker nothing to replay.
 * They are random and long, so a fast unsalted hash is enough (unlike passwords).
 */
export function hashBearerValue(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('base64url');
}

/** Constant-time equality of two secrets (compared as their hashes, so lengths leak nothing either). */
export function secretsEqual(presented: string, expected: string): boolean {
  return timingSafeEqual(Buffer.from(hashBearerValue(presented)), Buffer.from(hashBearerValue(expected)));
}

/** Constant-time check of a presented secret against the hash we stored for it. */
export function matchesStoredHash(presented: string, storedHash: string): boolean {
  const candidate = Buffer.from(hashBearerValue(presented));
  const stored = Buffer.from(storedHash);
  return candidate.length === stored.length && timingSafeEqual(candidate, stored);
}
