import { OAuthError } from './errors';

/**
 * The scopes third parties can ask for, with the sentence the consent page shows for each.
 * Refresh tokens go to every client registered for the refresh_token grant (voice platforms never
 * ask for `offline_access`); the scope only tells the user that access outlives their visit.
 */
export const SCOPE_DESCRIPTIONS: Record<string, string> = {
  'properties:read': 'See your properties and their details',
  'properties:write': 'Change your properties and their details',
  'reservations:read': 'See reservations and guests',
  'reservations:write': 'Create and change reservations',
  'calendar:read': 'See availability and blocked dates',
  'devices:control': 'Control your smart-home devices by voice',
  offline_access: 'Stay connected when you are not using the app',
  // OpenID Connect (id-tokens.ts, userinfo.ts): who the user is, for "sign in with the PM app".
  openid: 'Know who you are when you sign in (your account id)',
  profile: 'See your name',
  email: 'See your email address',
};

export const SUPPORTED_SCOPES = Object.keys(SCOPE_DESCRIPTIONS);

const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/** RFC 6749 section 3.3: space-delimited, case-sensitive, no duplicates that matter. */
export function parseScope(scope: string | undefined): string[] {
  if (scope === undefined || scope.trim() === '') return [];
  const scopes = scope.split(' ').filter(Boolean);
  if (!scopes.every((entry) => SCOPE_TOKEN.test(entry))) throw new OAuthError('invalid_scope', 'scope contains characters RFC 6749 does not allow');
  return [...new Set(scopes)];
}

/** The requested scopes, or the client's defaults when none were asked for; never more than the client may have. */
export function grantableScopes(requested: string[], allowed: string[]): string[] {
  const scopes = requested.length > 0 ? requested : allowed;
  const refused = scopes.filter((scope) => !allowed.includes(scope));
  if (refused.length > 0) throw new OAuthError('invalid_scope', `scope not allowed for this client: ${refused.join(' ')}`);
  return scopes;
}

export function coversScopes(granted: string[], requested: string[]): boolean {
  return requested.every((scope) => granted.includes(scope));
}
