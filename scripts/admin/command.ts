import type { ParseArgsConfig } from 'node:util';
import { InvalidRoleNames, roleNames } from '../../platform/roles';
import type { AdminContext } from './context';

/** Bad usage: the message names the problem; the command line answers it with exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Something the operator asked for could not be done (unknown connection, refused by the workflow): exit code 1. */
export class CommandFailed extends Error {
  override name = 'CommandFailed';
}

export type OptionValues = Record<string, string | boolean | Array<string | boolean> | undefined>;

export interface CommandInput {
  values: OptionValues;
  /** The positionals in the order `positionals` names them; their count is checked before `run`. */
  positionals: string[];
}

/**
 * One `npm run admin -- <name>` command. New kinds of things (voice devices) come in as more entries
 * of the table in scripts/admin.ts; parsing, usage text and exit codes stay the same for all.
 */
export interface AdminCommand {
  name: string;
  /** Arguments after the name, for the usage text, e.g. `<connectionId> [--full]`. */
  synopsis: string;
  summary: string;
  options: NonNullable<ParseArgsConfig['options']>;
  positionals: string[];
  /** Answers the exit code; throws UsageError or CommandFailed for the usual refusals. */
  run(input: CommandInput, context: AdminContext): Promise<number>;
}

export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Ids are checked before they reach a query, so a typo is a usage error rather than a database error. */
export function uuidArgument(value: string, what: string): string {
  if (!UUID.test(value)) throw new UsageError(`${what}: "${value}" is not a UUID`);
  return value.toLowerCase();
}

const EMAIL = /^[^\s@]+@[^\s@]+$/;

export function emailArgument(value: string, what: string): string {
  if (!EMAIL.test(value)) throw new UsageError(`${what}: "${value}" is not an email address`);
  return value;
}

/** A comma-separated list of role names (PM or portal roles); "" is none. Checked, deduplicated and sorted. */
export function roleListArgument(value: string, what: string): string[] {
  const names = value.split(',').map((name) => name.trim()).filter((name) => name !== '');
  try {
    return roleNames(names, what);
  } catch (error) {
    if (error instanceof InvalidRoleNames) throw new UsageError(error.message);
    throw error;
  }
}

export function oneOf<T extends string>(value: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${what}: "${value}" is not one of ${allowed.join(', ')}`);
  return value as T;
}
