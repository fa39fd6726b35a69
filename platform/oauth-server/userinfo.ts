import type { CommonQueryMethods } from 'slonik';
import { findUserinfo, type UserinfoRow } from '../../db/queries/userinfo';
import { findToken, isLive } from './introspection';
import type { TokenIssuer } from './token-issuer';

/**
 * OpenID Connect Core 1.0 section 5.3 (userinfo) and the claims of section 5.1 we know: `sub` always,
 * `name` with the profile scope, `email` and `email_verified` with the email scope. `email_verified` is
 * false: accounts are made by operators and nobody has confirmed the address belongs to the user, so a
 * relying party must not treat the email as proof of identity (sub is the stable id).
 */
export const USERINFO_CLAIMS = ['sub', 'name', 'email', 'email_verified'] as const;

export type UserinfoClaims = { sub: string; name?: string; email?: string; email_verified?: boolean };

export function userinfoClaims(user: Pick<UserinfoRow, 'id' | 'email' | 'displayName'>, scopes: readonly string[]): UserinfoClaims {
  return {
    sub: user.id,
    ...(scopes.includes('profile') ? { name: user.displayName } : {}),
    ...(scopes.includes('email') ? { email: user.email, email_verified: false } : {}),
  };
}

export type UserinfoOutcome =
  | { ok: true; claims: UserinfoClaims }
  | { ok: false; error: 'invalid_token' | 'insufficient_scope'; description: string };

/**
 * The claims an access token may read: a live access token of ours (not a refresh token; revocation
 * seen at once) issued for a user who is not disabled, with the openid scope.
 */
export async function userinfoFor(db: CommonQueryMethods, tokens: TokenIssuer, accessToken: string): Promise<UserinfoOutcome> {
  const invalid = (description: string): UserinfoOutcome => ({ ok: false, error: 'invalid_token', description });
  const found = await findToken(db, tokens, accessToken, 'access_token');
  if (!found || found.kind !== 'access_token' || !isLive(found, tokens.clock())) return invalid('the access token is invalid, expired or revoked');
  if (found.row.userId === null) return invalid('the access token was not issued for a user');
  if (!found.row.scopes.includes('openid')) return { ok: false, error: 'insufficient_scope', description: 'userinfo needs the openid scope' };
  const user = await findUserinfo(db, found.row.userId);
  if (!user || user.disabled) return invalid('the access token is invalid, expired or revoked');
  return { ok: true, claims: userinfoClaims(user, found.row.scopes) };
}
