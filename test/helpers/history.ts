import type { WorkflowHandle } from '@temporalio/client';

/**
 * Every piece of text in a workflow's history: payload bytes decoded as UTF-8 (inputs, results,
 * signals, updates, queries' recorded answers, failures) and every plain string field.
 */
export async function historyPayloadTexts(handle: WorkflowHandle): Promise<string[]> {
  const history = await handle.fetchHistory();
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
