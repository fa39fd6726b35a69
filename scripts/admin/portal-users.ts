import { UniqueIntegrityConstraintViolationError } from 'slonik';
import { createPortalUser, PORTAL_PASSWORD_MIN_LENGTH } from '../../platform/portal/users';
import { CommandFailed, stringOption, UsageError, type AdminCommand } from './command';

const EMAIL = /^[^\s@]+@[^\s@]+$/;
const PORTAL_ROLE = /^[a-z][a-z0-9_-]{0,62}$/;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** Never from the command line (shell history, `ps`): stdin with --password-stdin, else NEW_USER_PASSWORD. */
async function readPassword(fromStdin: boolean): Promise<string> {
  if (fromStdin) {
    if (process.stdin.isTTY) console.error('portal-users create: reading the password from stdin; end it with Ctrl-D');
    // Only the line ending that `echo` or a here-string adds is removed; the rest is the password.
    const password = (await readStdin()).replace(/\r?\n$/, '');
    if (!password) throw new UsageError('--password-stdin: stdin held no password');
    return password;
  }
  const password = process.env.NEW_USER_PASSWORD;
  if (!password) throw new UsageError('no password given: pipe it in with --password-stdin, or set NEW_USER_PASSWORD (never pass it as an argument)');
  return password;
}

/**
 * A portal-only account of the Reality Portal (no PM user): it signs in at the portal's /login with its
 * own password. It is never linked to a PM user with the same email (README: Reality Portal).
 */
export const portalUsersCreateCommand: AdminCommand = {
  name: 'portal-users create',
  synopsis: '<email> <name> [--roles portal_role,...] [--password-stdin]',
  summary: "create a portal-only account (the password from stdin or NEW_USER_PASSWORD); prints its id",
  options: { roles: { type: 'string' }, 'password-stdin': { type: 'boolean' } },
  positionals: ['email', 'name'],
  async run({ values, positionals }, context) {
    const [email, displayName] = [positionals[0]!.trim(), positionals[1]!.trim()];
    if (!EMAIL.test(email)) throw new UsageError(`<email>: "${email}" is not an email address`);
    if (!displayName) throw new UsageError('<name>: must not be empty');
    const roles = (stringOption(values, 'roles') ?? '').split(',').map((role) => role.trim()).filter(Boolean);
    const badRole = roles.find((role) => !PORTAL_ROLE.test(role));
    if (badRole) throw new UsageError(`--roles: "${badRole}" is not a role name (lower-case letters, digits, _ and -)`);
    const password = await readPassword(values['password-stdin'] === true);
    if (password.length < PORTAL_PASSWORD_MIN_LENGTH) throw new CommandFailed(`the password must have at least ${PORTAL_PASSWORD_MIN_LENGTH} characters`);
    try {
      const user = await createPortalUser(await context.db(), { email, displayName, password, roles });
      console.log(user.id);
      return 0;
    } catch (error) {
      if (error instanceof UniqueIntegrityConstraintViolationError) throw new CommandFailed(`a portal-only account with the email ${email} exists already`);
      throw error;
    }
  },
};
