import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { UniqueIntegrityConstraintViolationError } from 'slonik';
import { createDatabasePool } from '../db/pool';
import { ConfigError, loadConfig } from '../platform/config';
import { createUser } from '../platform/users';
import { emailArgument, roleListArgument, UsageError } from './admin/command';
import { readNewPassword } from './new-password';

/**
 * Creates a PM-app user:
 *   npm run create-user -- --email ann@example.com --name "Ann" [--roles owner,agent] [--password-stdin]
 *
 * The password never goes on the command line (it would land in shell history and `ps`): it is read
 * from stdin with --password-stdin, else from NEW_USER_PASSWORD. Migrations are not run here.
 * Prints the new user's id on stdout. Exit codes: 0 created, 1 refused by the database or createUser,
 * 2 bad usage or configuration.
 */

const USAGE = 'usage: npm run create-user -- --email <email> --name <display name> [--roles <role,...>] [--password-stdin]';

export interface CreateUserArguments {
  email: string;
  displayName: string;
  /** PM roles (mapped onto portal roles at SSO). */
  roles: string[];
  passwordFromStdin: boolean;
}

export function parseCreateUserArguments(argv: string[]): CreateUserArguments {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        email: { type: 'string' },
        name: { type: 'string' },
        roles: { type: 'string' },
        'password-stdin': { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const email = values.email?.trim() ?? '';
  const displayName = values.name?.trim() ?? '';
  if (!email) throw new UsageError('--email is required');
  emailArgument(email, '--email');
  if (!displayName) throw new UsageError('--name is required');
  const roles = roleListArgument(values.roles ?? '', '--roles');
  return { email, displayName, roles, passwordFromStdin: values['password-stdin'] ?? false };
}

function readDatabaseUrl(env: NodeJS.ProcessEnv): string {
  const { databaseUrl } = loadConfig(env, ['DATABASE_URL']);
  if (!databaseUrl) throw new ConfigError(['DATABASE_URL: is required to create a user']);
  return databaseUrl;
}

async function main(): Promise<number> {
  let args: CreateUserArguments;
  let password: string;
  let databaseUrl: string;
  try {
    args = parseCreateUserArguments(process.argv.slice(2));
    databaseUrl = readDatabaseUrl(process.env);
    password = await readNewPassword('create-user', args.passwordFromStdin, process.env);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`create-user: ${error.message}\n${USAGE}`);
      return 2;
    }
    if (error instanceof ConfigError) {
      console.error(`create-user: ${error.message}`);
      return 2;
    }
    throw error;
  }

  const pool = await createDatabasePool(databaseUrl, { maximumPoolSize: 1 });
  try {
    const user = await createUser(pool, { email: args.email, displayName: args.displayName, password, roles: args.roles });
    console.log(user.id);
    return 0;
  } catch (error) {
    if (error instanceof UniqueIntegrityConstraintViolationError) {
      console.error(`create-user: a user with the email ${args.email} already exists`);
      return 1;
    }
    // createUser's own refusals (e.g. a short password) are plain Errors with a readable message.
    if (error instanceof Error && error.constructor === Error) {
      console.error(`create-user: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    await pool.end();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await main();
}
