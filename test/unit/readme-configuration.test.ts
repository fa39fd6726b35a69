import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../../platform/config';

describe('README configuration table', () => {
  it('documents every environment variable the platform reads', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const firstCells = [...readme.matchAll(/^\|([^|\n]+)\|/gm)].map((match) => match[1]!);
    const documented = new Set(firstCells.flatMap((cell) => [...cell.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((match) => match[1])));
    expect(CONFIG_VARIABLES.filter((name) => !documented.has(name))).toEqual([]);
  });
});
