import type { Connection } from '@temporalio/client';
import { SearchAttributeType } from '@temporalio/common';
import temporalProto from '@temporalio/proto';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../workflows/search-attributes';

const { IndexedValueType } = temporalProto.temporal.api.enums.v1;
const GRPC_UNIMPLEMENTED = 12;

const INDEXED_TYPES: Partial<Record<SearchAttributeType, temporalProto.temporal.api.enums.v1.IndexedValueType>> = {
  [SearchAttributeType.KEYWORD]: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  [SearchAttributeType.DATETIME]: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
};

/**
 * Registers the platform's custom search attributes in a namespace, adding only those missing, so it
 * is safe to run on every start of development and against a cluster that has some of them already.
 * Answers the names it added.
 */
export async function registerSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const known = await registeredNames(connection, namespace);
  const missing = CUSTOM_SEARCH_ATTRIBUTES.filter((key) => !known.has(key.name));
  if (missing.length === 0) return [];
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(missing.map((key) => [key.name, INDEXED_TYPES[key.type]!])),
  });
  return missing.map((key) => key.name);
}

async function registeredNames(connection: Connection, namespace: string): Promise<Set<string>> {
  try {
    const existing = await connection.operatorService.listSearchAttributes({ namespace });
    return new Set([...Object.keys(existing.customAttributes ?? {}), ...Object.keys(existing.systemAttributes ?? {})]);
  } catch (error) {
    // The time-skipping test server can add search attributes but not list them; it starts empty.
    if ((error as { code?: number }).code === GRPC_UNIMPLEMENTED) return new Set();
    throw error;
  }
}
