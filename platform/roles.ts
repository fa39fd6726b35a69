/** PM and portal role names (sso_role_mappings.pm_role has the same CHECK). */
export const ROLE_NAME_PATTERN = '^[a-z][a-z0-9_-]{0,62}$';
const ROLE_NAME = new RegExp(ROLE_NAME_PATTERN);
export const MAX_ROLES = 50;

/** A list of roles that cannot be stored; the message says which and why. */
export class InvalidRoleNames extends Error {
  override name = 'InvalidRoleNames';
}

/** Checked, deduplicated and sorted role names; `what` names the list in the message. Throws InvalidRoleNames. */
export function roleNames(roles: readonly string[], what: string): string[] {
  if (roles.length > MAX_ROLES) throw new InvalidRoleNames(`${what}: at most ${MAX_ROLES}`);
  const invalid = roles.find((role) => !ROLE_NAME.test(role));
  if (invalid !== undefined) {
    throw new InvalidRoleNames(`${what}: "${invalid.slice(0, 64)}" is not a role name (a lower-case letter, then up to 62 lower-case letters, digits, _ or -)`);
  }
  return [...new Set(roles)].sort();
}
