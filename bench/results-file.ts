import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { repoRoot } from '../scripts/temporal-binaries';

export const RESULTS_MARKDOWN = path.join(repoRoot, 'bench', 'RESULTS.md');
export const RESULTS_DIR = path.join(repoRoot, 'bench', 'results');

/**
 * Replaces one suite's section of bench/RESULTS.md (between `<!-- <suite>:start -->` and
 * `<!-- <suite>:end -->`), appending it when missing; the other suites' sections stay as they are.
 */
export async function writeResultsSection(suite: string, markdown: string): Promise<void> {
  const [start, end] = [`<!-- ${suite}:start -->`, `<!-- ${suite}:end -->`];
  const section = `${start}\n${markdown.trim()}\n${end}`;
  const current = existsSync(RESULTS_MARKDOWN) ? await readFile(RESULTS_MARKDOWN, 'utf8') : '# Benchmark results\n\nWritten by `npm run bench`; each suite rewrites only its own section.\n';
  const from = current.indexOf(start);
  const to = current.indexOf(end);
  const next = from >= 0 && to > from ? current.slice(0, from) + section + current.slice(to + end.length) : `${current.trimEnd()}\n\n${section}\n`;
  await writeFile(RESULTS_MARKDOWN, next);
}

/** The raw numbers of one run, as JSON under bench/results/; answers the file's path. */
export async function writeRawResults(suite: string, data: unknown): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${suite}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(data, null, 1)}\n`);
  return file;
}
