import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where `npm run dev` keeps its state and the secrets it generated once (keys, tokens, the demo password). */
export const DEV_DATA_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '.data', 'dev');

/** Reads a development secret from `file`, or creates it (mode 0600) the first time. */
export async function readOrCreate(file: string, create: () => string): Promise<{ value: string; created: boolean }> {
  if (existsSync(file)) return { value: (await readFile(file, 'utf8')).trim(), created: false };
  await mkdir(path.dirname(file), { recursive: true });
  const value = create();
  await writeFile(file, `${value}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return { value, created: true };
}
