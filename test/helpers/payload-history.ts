import type { Payload, PayloadCodec } from '@temporalio/common';
import type { History } from '@temporalio/common/lib/proto-utils';

const PATCH_MARKER = 'core_patch';

/**
 * Every Payload message in a history (inputs, results, signals, updates, memos, failure details, ...)
 * except search attributes and patch markers: the server must read search attributes to index them and
 * the SDK core writes patch markers itself, so no codec touches either. Search attributes hold only ids,
 * statuses, times and error kinds; patch markers only the patch id.
 */
export function historyPayloads(history: History): Payload[] {
  const found: Payload[] = [];
  const visit = (value: unknown, key?: string): void => {
    if (key === 'searchAttributes') return;
    if (Array.isArray(value)) return value.forEach((item) => visit(item));
    if (!value || typeof value !== 'object' || value instanceof Uint8Array) return;
    if ((value as { markerName?: unknown }).markerName === PATCH_MARKER) return;
    const metadata = (value as { metadata?: unknown }).metadata;
    if (metadata && typeof metadata === 'object' && (metadata as Record<string, unknown>).encoding instanceof Uint8Array) {
      found.push(value as Payload);
      return;
    }
    Object.entries(value).forEach(([field, child]) => visit(child, field));
  };
  visit(history.events);
  return found;
}

/**
 * Decodes, in place, every payload of `history` through `codecs` (last codec first, as a client does)
 * and returns the same history: what the history looks like to a client with those codecs.
 */
export async function decodeHistoryPayloads(history: History, codecs: readonly PayloadCodec[]): Promise<History> {
  if (codecs.length === 0) return history;
  const payloads = historyPayloads(history);
  let decoded: Payload[] = payloads;
  for (const codec of [...codecs].reverse()) decoded = await codec.decode(decoded);
  payloads.forEach((payload, index) => {
    const plain = decoded[index]!;
    payload.metadata = plain.metadata;
    payload.data = plain.data;
  });
  return history;
}
