import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { UniqueIntegrityConstraintViolationError } from 'slonik';
import { createDatabasePool } from '../db/pool';
import { ConfigError, loadConfig } from '../platform/config';
import { roleNames, SsoAdministrationError } from '../platform/sso/user-administration';
import { createUser } from '../platform/users';

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

class UsageError extends Error {
  override name = 'UsageError';
}

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
  if (!/^[^\s@]+@[^\s@]+$/.test(email)) throw new UsageError(`--email: "${email}" is not an email address`);
  if (!displayName) throw new UsageError('--name is required');
  let roles: string[];
  try {
    roles = roleNames((values.roles ?? '').split(',').map((role) => role.trim()).filter((role) => role !== ''), '--roles');
  } catch (error) {
    if (error instanceof SsoAdministrationError) throw new UsageError(error.message);
    throw error;
  }
  return { email, displayName, roles, passwordFromStdin: values['password-stdin'] ?? false };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

async function readPassword(fromStdin: boolean, env: NodeJS.ProcessEnv): Promise<string> {
  if (fromStdin) {
    if (process.stdin.isTTY) console.error('create-user: reading the password from stdin; end it with Ctrl-D');
    // Only the line ending that `echo` or a here-string adds is removed; the rest is the password.
    const password = (await readStdin()).replace(/\r?\n$/, '');
    if (!password) throw new UsageError('--password-stdin: stdin held no password');
    return password;
  }
  const password = env.NEW_USER_PASSWORD;
  if (!password) {
    throw new UsageError(
      'no password given: pipe it in with --password-stdin, or set NEW_USER_PASSWORD (never pass it as an argument)',
    );
  }
  return password;
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
    password = await readPassword(args.passwordFromStdin, process.env);
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
