import { hash, verify } from '@node-rs/argon2';
import type { CommonQueryMethods } from 'slonik';
import { findLocalPortalUserCredentials, insertLocalPortalUser, type PortalUserRow } from '../../db/queries/portal-users';

/**
 * The Reality Portal's own accounts. A PM user's account is created on their first SSO and linked by
 * the PM user's id (platform/sso/portal-sign-in.ts); the accounts here are portal-only: they sign in
 * with their own password (Argon2id, like PM users) and are never merged with a PM user of the same
 * email, since whoever controls one side would then take over the other.
 */

// Verified against when the email is unknown, so a login takes as long whether or not the account exists.
const ABSENT_USER_HASH = hash('portal timing equaliser, never a real password');

export const PORTAL_PASSWORD_MIN_LENGTH = 12;

export async function createPortalUser(
  db: CommonQueryMethods,
  input: { email: string; displayName: string; password: string; roles?: string[] },
): Promise<PortalUserRow> {
  if (input.password.length < PORTAL_PASSWORD_MIN_LENGTH) throw new Error(`password must have at least ${PORTAL_PASSWORD_MIN_LENGTH} characters`);
  return insertLocalPortalUser(db, { email: input.email, displayName: input.displayName, passwordHash: await hash(input.password), roles: input.roles ?? [] });
}

/** The portal-only account when the password matches (and the account is not disabled). */
export async function verifyPortalUserPassword(db: CommonQueryMethods, email: string, password: string): Promise<PortalUserRow | null> {
  const candidate = await findLocalPortalUserCredentials(db, email);
  if (!candidate) {
    await verify(await ABSENT_USER_HASH, password).catch(() => false);
    return null;
  }
  const { passwordHash, ...user } = candidate;
  return (await verify(passwordHash, password)) ? user : null;
}
