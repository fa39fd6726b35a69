import { hash, verify } from '@node-rs/argon2';
import type { CommonQueryMethods } from 'slonik';
import { findUserCredentials, insertUser, type UserRow } from '../db/queries/users';
import { roleNames } from './sso/user-administration';

// Verified against when the email is unknown, so a login takes as long whether or not the account exists.
const ABSENT_USER_HASH = hash('timing equaliser, never a real password');

/** `roles` are PM roles (mapped onto portal roles at SSO), checked role names. */
export async function createUser(db: CommonQueryMethods, input: { email: string; displayName: string; password: string; roles?: readonly string[] }): Promise<UserRow> {
  if (input.password.length < 12) throw new Error('password must have at least 12 characters');
  const roles = roleNames(input.roles ?? [], 'roles');
  return insertUser(db, { email: input.email, displayName: input.displayName, passwordHash: await hash(input.password), roles });
}

/** Argon2id (the library's default) hashes; returns the user (and whether they are disabled) only when the password matches. */
export async function verifyUserPassword(db: CommonQueryMethods, email: string, password: string): Promise<(UserRow & { disabled: boolean }) | null> {
  const candidate = await findUserCredentials(db, email);
  if (!candidate) {
    await verify(await ABSENT_USER_HASH, password).catch(() => false);
    return null;
  }
  const { passwordHash, ...user } = candidate;
  return (await verify(passwordHash, password)) ? user : null;
}
