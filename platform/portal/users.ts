import type { CommonQueryMethods } from 'slonik';
import { findLocalPortalUserCredentials, insertLocalPortalUser, type PortalUserRow } from '../../db/queries/portal-users';
import { accountWithPassword, hashNewPassword } from '../passwords';

/**
 * The Reality Portal's own accounts. A PM user's account is created on their first SSO and linked by
 * the PM user's id (platform/sso/portal-sign-in.ts); the accounts here are portal-only: they sign in
 * with their own password (Argon2id, like PM users) and are never merged with a PM user of the same
 * email, since whoever controls one side would then take over the other.
 */

export async function createPortalUser(
  db: CommonQueryMethods,
  input: { email: string; displayName: string; password: string; roles?: string[] },
): Promise<PortalUserRow> {
  const passwordHash = await hashNewPassword(input.password);
  return insertLocalPortalUser(db, { email: input.email, displayName: input.displayName, passwordHash, roles: input.roles ?? [] });
}

/** The portal-only account when the password matches (and the account is not disabled). */
export async function verifyPortalUserPassword(db: CommonQueryMethods, email: string, password: string): Promise<PortalUserRow | null> {
  return accountWithPassword(await findLocalPortalUserCredentials(db, email), password);
}
