import { createHash, randomBytes } from 'node:crypto';

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
