import { UniqueIntegrityConstraintViolationError } from 'slonik';
import { PASSWORD_MIN_LENGTH } from '../../platform/passwords';
import { createPortalUser } from '../../platform/portal/users';
import { readNewPassword } from '../new-password';
import { CommandFailed, emailArgument, roleListArgument, stringOption, UsageError, type AdminCommand } from './command';

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
    const email = emailArgument(positionals[0]!.trim(), '<email>');
    const displayName = positionals[1]!.trim();
    if (!displayName) throw new UsageError('<name>: must not be empty');
    const roles = roleListArgument(stringOption(values, 'roles') ?? '', '--roles');
    const password = await readNewPassword('portal-users create', values['password-stdin'] === true, process.env);
    if (password.length < PASSWORD_MIN_LENGTH) throw new CommandFailed(`the password must have at least ${PASSWORD_MIN_LENGTH} characters`);
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
