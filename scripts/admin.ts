import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError } from '../platform/config';
import { CommandFailed, UsageError, type AdminCommand, type CommandInput } from './admin/command';
import { disconnectCommand, refreshCommand, syncCommand } from './admin/connection-actions';
import { connectionsCommand } from './admin/connections';
import { AdminContext } from './admin/context';
import { reencryptCommand, registerSearchAttributesCommand, rotateSigningKeyCommand } from './admin/maintenance';
import { voiceClientCreateCommand, voiceClientListCommand, voiceClientManifestCommand } from './admin/voice-clients';
import { voiceDevicesListCommand, voiceDevicesUnlinkCommand } from './admin/voice-devices';
import { portalUsersCreateCommand } from './admin/portal-users';
import { ssoRolesDeleteCommand, ssoRolesListCommand, ssoRolesSetCommand, usersDisableCommand, usersEnableCommand, usersRolesCommand, usersShowCommand } from './admin/sso';

/**
 * `npm run admin -- <command>`: the operators' command line. Everything that changes a connection or a
 * voice device link goes through its workflow. Configuration comes from the environment like every other process (DATABASE_URL,
 * TEMPORAL_*, TEMPORAL_PAYLOAD_KEY; INTEGRATION_ENCRYPTION_KEY for the key commands).
 * Exit codes: 0 done, 1 refused or failed (the message says why), 2 bad usage or configuration.
 */

const COMMANDS: AdminCommand[] = [
  connectionsCommand,
  refreshCommand,
  syncCommand,
  disconnectCommand,
  voiceClientCreateCommand,
  voiceClientListCommand,
  voiceClientManifestCommand,
  voiceDevicesListCommand,
  voiceDevicesUnlinkCommand,
  usersShowCommand,
  usersRolesCommand,
  usersDisableCommand,
  usersEnableCommand,
  ssoRolesListCommand,
  ssoRolesSetCommand,
  ssoRolesDeleteCommand,
  portalUsersCreateCommand,
  rotateSigningKeyCommand,
  reencryptCommand,
  registerSearchAttributesCommand,
];

function usage(): string {
  const width = Math.max(...COMMANDS.map((command) => command.name.length));
  return [
    'usage: npm run admin -- <command> [arguments]',
    '',
    'commands:',
    ...COMMANDS.flatMap((command) => [`  ${command.name.padEnd(width)}  ${command.synopsis}`.trimEnd(), `  ${''.padEnd(width)}    ${command.summary}`]),
    '',
    'Output is a table for people; --json where offered prints JSON for scripts.',
    'Exit codes: 0 done, 1 refused or failed, 2 bad usage or configuration.',
  ].join('\n');
}

/** A command of two words (`voice-client create`) or of one; undefined when there is none. */
function findCommand(argv: string[]): { command: AdminCommand; rest: string[] } | undefined {
  for (const words of [2, 1]) {
    const command = COMMANDS.find((candidate) => candidate.name === argv.slice(0, words).join(' '));
    if (command) return { command, rest: argv.slice(words) };
  }
  return undefined;
}

/** Finds the command and checks its arguments with node:util parseArgs; throws UsageError naming the problem. */
function parseCommandLine(argv: string[]): { command: AdminCommand; input: CommandInput } {
  if (argv[0] === undefined) throw new UsageError('no command given');
  const found = findCommand(argv);
  if (!found) {
    const subcommands = COMMANDS.filter((candidate) => candidate.name.startsWith(`${argv[0]} `)).map((candidate) => candidate.name);
    if (subcommands.length > 0) throw new UsageError(`"${argv.slice(0, 2).join(' ')}" is not a command; there are ${subcommands.join(', ')}`);
    throw new UsageError(`unknown command "${argv[0]}"`);
  }
  const { command, rest } = found;
  const name = command.name;
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`${name}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const { values, positionals } = parsed;
  if (positionals.length < command.positionals.length) throw new UsageError(`${name}: missing <${command.positionals[positionals.length]}>`);
  if (positionals.length > command.positionals.length) throw new UsageError(`${name}: unexpected argument "${positionals[command.positionals.length]}"`);
  return { command, input: { values, positionals } };
}

export async function runAdmin(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (argv.length === 1 && ['help', '--help', '-h'].includes(argv[0]!)) {
    console.log(usage());
    return 0;
  }
  const context = new AdminContext(env);
  try {
    const { command, input } = parseCommandLine(argv);
    return await command.run(input, context);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`admin: ${error.message}\n\n${usage()}`);
      return 2;
    }
    if (error instanceof ConfigError) {
      console.error(`admin: ${error.message}`);
      return 2;
    }
    if (error instanceof CommandFailed) {
      console.error(`admin: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    await context.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await runAdmin(process.argv.slice(2), process.env);
}
