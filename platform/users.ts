import type { CommonQueryMethods } from 'slonik';
import { findUserCredentials, insertUser, type UserRow } from '../db/queries/users';
import { accountWithPassword, hashNewPassword } from './passwords';
import { roleNames } from './roles';

/** `roles` are PM roles (mapped onto portal roles at SSO), checked role names. */
export async function createUser(db: CommonQueryMethods, input: { email: string; displayName: string; password: string; roles?: readonly string[] }): Promise<UserRow> {
  const passwordHash = await hashNewPassword(input.password);
  return insertUser(db, { email: input.email, displayName: input.displayName, passwordHash, roles: roleNames(input.roles ?? [], 'roles') });
}

/** The user (and whether they are disabled) only when the password matches. */
export async function verifyUserPassword(db: CommonQueryMethods, email: string, password: string): Promise<(UserRow & { disabled: boolean }) | null> {
  return accountWithPassword(await findUserCredentials(db, email), password);
}
