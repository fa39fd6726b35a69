import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import type { History } from '@temporalio/common/lib/proto-utils';
import { historyTexts } from '../helpers/history';
import { decodeHistoryPayloads } from '../helpers/payload-history';
import { historyFromJsonObject, historyToJsonObject } from './history-json';

/** What the recorders (test/replay/record*.ts, `npm run record-histories`) share: fetching, checking and writing histories. */

export const HISTORIES_DIR = fileURLToPath(new URL('./histories', import.meta.url));

/** The run's history (the newest run unless `runId`), decoded with the payload codec of the platform that ran it: committed histories replay without any key. */
export async function recordedHistory(handle: WorkflowHandle, runId?: string): Promise<History> {
  const run = runId ? handle.client.getHandle(handle.workflowId, runId) : handle;
  return decodeHistoryPayloads(await run.fetchHistory(), handle.client.options.loadedDataConverter.payloadCodecs);
}

/**
 * Writes test/replay/histories/<name>.json for each history, once it is checked: it holds none of
 * `secrets`, and every payload is readable JSON (so replay needs no key and the scan means something).
 */
export async function writeCheckedHistories(recorded: Map<string, History>, secrets: Set<string>): Promise<void> {
  await mkdir(HISTORIES_DIR, { recursive: true });
  for (const [name, history] of recorded) {
    const json = `${JSON.stringify(scrubIdentities(historyToJsonObject(history)), null, 1)}\n`;
    // What is scanned is what is committed, read back as the replay test reads it.
    const texts = [...historyTexts(historyFromJsonObject(JSON.parse(json))), json];
    for (const secret of secrets) {
      expect(texts.some((text) => text.includes(secret)), `${name} holds a secret`).toBe(false);
    }
    expect(payloadEncodings(historyFromJsonObject(JSON.parse(json))).filter((encoding) => encoding !== 'json/plain' && encoding !== 'binary/null'), name).toEqual([]);
    await writeFile(path.join(HISTORIES_DIR, `${name}.json`), json);
  }
}

/** Worker identities name the recording machine (pid@host): no business of the repository. */
function scrubIdentities(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(scrubIdentities);
  if (!value || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => [key, key === 'identity' && typeof inner === 'string' ? 'record-replay-histories' : scrubIdentities(inner)]),
  );
}

function payloadEncodings(history: History): string[] {
  const encodings: string[] = [];
  const visit = (value: unknown): void => {
    if (!value || typeof value !== 'object' || value instanceof Uint8Array) return;
    if (Array.isArray(value)) return value.forEach(visit);
    const metadata = (value as { metadata?: unknown }).metadata;
    if (metadata && typeof metadata === 'object' && 'encoding' in metadata && (metadata as { encoding: unknown }).encoding instanceof Uint8Array) {
      encodings.push(Buffer.from((metadata as { encoding: Uint8Array }).encoding).toString('utf8'));
    }
    Object.values(value).forEach(visit);
  };
  visit(history.events);
  return encodings;
}
