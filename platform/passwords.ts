import { hash, verify } from '@node-rs/argon2';

/** Passwords of PM users and of portal-only accounts alike. */
export const PASSWORD_MIN_LENGTH = 12;

// Verified against when the email is unknown, so a login takes as long whether or not the account exists.
const ABSENT_ACCOUNT_HASH = hash('timing equaliser, never a real password');

/** An Argon2id hash (the library's default) of a new password, refused when it is too short. */
export async function hashNewPassword(password: string): Promise<string> {
  if (password.length < PASSWORD_MIN_LENGTH) throw new Error(`password must have at least ${PASSWORD_MIN_LENGTH} characters`);
  return hash(password);
}

/**
 * The account without its hash when the password matches it. With no account (unknown email) the
 * password is still verified, against a stand-in hash, so timing tells nothing.
 */
export async function accountWithPassword<Credentials extends { passwordHash: string }>(
  credentials: Credentials | null,
  password: string,
): Promise<Omit<Credentials, 'passwordHash'> | null> {
  if (!credentials) {
    await verify(await ABSENT_ACCOUNT_HASH, password).catch(() => false);
    return null;
  }
  const { passwordHash, ...account } = credentials;
  return (await verify(passwordHash, password)) ? account : null;
}
