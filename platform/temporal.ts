import { Client, Connection, isGrpcServiceError } from '@temporalio/client';
import type { PayloadCodec } from '@temporalio/common';
import type { Config } from './config';

/** A client whose payloads go through `codec` (the payload encryption codec) both ways. */
export async function connectTemporalClient(settings: Config['temporal'], codec: PayloadCodec): Promise<Client> {
  const connection = await Connection.connect({ address: settings.address });
  return new Client({ connection, namespace: settings.namespace, dataConverter: { payloadCodecs: [codec] } });
}

/**
 * gRPC status codes (fixed by the gRPC specification) that say the frontend could not be reached or could
 * not take the call now: DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE.
 */
const UNAVAILABLE_CODES: ReadonlySet<number> = new Set([4, 8, 14]);

/**
 * Whether a Temporal client call failed because Temporal is down, restarting or overloaded, rather than
 * anything about the call: callers answer "try again later" (503). Looks through `cause` chains, since
 * the client wraps the gRPC error in its own ServiceError.
 */
export function isTransientTemporalFault(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth += 1) {
    if (isGrpcServiceError(current) && UNAVAILABLE_CODES.has(current.code)) return true;
  }
  return false;
}
