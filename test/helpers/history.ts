import type { WorkflowHandle } from '@temporalio/client';
import type { History } from '@temporalio/common/lib/proto-utils';
import { decodeHistoryPayloads } from './payload-history';

/**
 * Every piece of text in a workflow's history: payload bytes decoded as UTF-8 (inputs, results,
 * signals, updates, queries' recorded answers, failures) and every plain string field. Payloads go
 * through the payload codecs of the handle's client first, so a codec-aware client sees plaintext
 * and a client without codecs sees what Temporal stores.
 */
export async function historyPayloadTexts(handle: WorkflowHandle): Promise<string[]> {
  const codecs = handle.client.options.loadedDataConverter.payloadCodecs;
  return historyTexts(await decodeHistoryPayloads(await handle.fetchHistory(), codecs));
}

/** The same for a history already fetched (or read back from JSON with `historyFromJSON`). */
export function historyTexts(history: History): string[] {
  const texts: string[] = [];
  const visit = (value: unknown): void => {
    if (value instanceof Uint8Array) texts.push(Buffer.from(value).toString('utf8'));
    else if (typeof value === 'string') texts.push(value);
    else if (Array.isArray(value)) value.forEach(visit);
    else if (value && typeof value === 'object') Object.values(value).forEach(visit);
  };
  visit(history.events);
  return texts;
}
