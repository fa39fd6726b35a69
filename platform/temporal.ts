import { Client, Connection } from '@temporalio/client';
import type { PayloadCodec } from '@temporalio/common';
import type { Config } from './config';

/** A client whose payloads go through `codec` (the payload encryption codec) both ways. */
export async function connectTemporalClient(settings: Config['temporal'], codec: PayloadCodec): Promise<Client> {
  const connection = await Connection.connect({ address: settings.address });
  return new Client({ connection, namespace: settings.namespace, dataConverter: { payloadCodecs: [codec] } });
}
