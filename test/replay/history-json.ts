import { createRequire } from 'node:module';
import type { History } from '@temporalio/common/lib/proto-utils';
// CommonJS: Node's ESM loader cannot see its named exports, so the default export is used.
import proto from '@temporalio/proto';
import { patchProtobufRoot } from '@temporalio/proto/lib/patch-protobuf-root';

/**
 * Histories as proto3 JSON (the format of `temporal workflow show --output json` and of Temporal Web's
 * download: enum names, RFC 3339 times, base64 bytes).
 *
 * Why not `historyToJSON` / `historyFromJSON` from @temporalio/common/lib/proto-utils: in this install
 * they throw "type must be a Type". The top-level protobufjs is 7 (for @grpc/proto-loader), so
 * @temporalio/common and @temporalio/proto each get their own nested protobufjs 8, and common's
 * protojson does not recognise the types built by proto's copy. Resolving protojson from
 * @temporalio/proto's own location gives the copy its types come from (and still works once npm
 * hoists a single protobufjs 8).
 */

const protoRequire = createRequire(createRequire(import.meta.url).resolve('@temporalio/proto'));
const protojson = protoRequire('protobufjs/ext/protojson') as {
  toJson(type: unknown, message: unknown): unknown;
  fromJson(type: unknown, json: unknown, options?: { ignoreUnknownFields?: boolean }): unknown;
};
const HistoryMessage = proto.temporal.api.history.v1.History;
const historyType = (patchProtobufRoot(proto) as unknown as { lookupType(name: string): unknown }).lookupType('temporal.api.history.v1.History');

/** The proto3 JSON object of a history (an object, so that callers can pretty-print or scrub it). */
export function historyToJsonObject(history: History): Record<string, unknown> {
  return protojson.toJson(historyType, HistoryMessage.fromObject(history)) as Record<string, unknown>;
}

/** A History from proto3 JSON; fields unknown to this SDK (a newer server's) are ignored. */
export function historyFromJsonObject(json: unknown): History {
  if (!json || typeof json !== 'object' || !Array.isArray((json as { events?: unknown }).events)) {
    throw new TypeError('not a history: expected an object with an array of events');
  }
  return protojson.fromJson(historyType, json, { ignoreUnknownFields: true }) as History;
}
