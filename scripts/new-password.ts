import { UsageError } from './admin/command';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A new account's password, never from the command line (shell history, `ps`): stdin with
 * --password-stdin, else NEW_USER_PASSWORD. `command` names the asking command in the prompt.
 */
export async function readNewPassword(command: string, fromStdin: boolean, env: NodeJS.ProcessEnv): Promise<string> {
  if (fromStdin) {
    if (process.stdin.isTTY) console.error(`${command}: reading the password from stdin; end it with Ctrl-D`);
    // Only the line ending that `echo` or a here-string adds is removed; the rest is the password.
    const password = (await readStdin()).replace(/\r?\n$/, '');
    if (!password) throw new UsageError('--password-stdin: stdin held no password');
    return password;
  }
  const password = env.NEW_USER_PASSWORD;
  if (!password) throw new UsageError('no password given: pipe it in with --password-stdin, or set NEW_USER_PASSWORD (never pass it as an argument)');
  return password;
}
