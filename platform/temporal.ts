import { Client, Connection } from '@temporalio/client';
import type { Config } from './config';

export async function connectTemporalClient(settings: Config['temporal']): Promise<Client> {
  const connection = await Connection.connect({ address: settings.address });
  return new Client({ connection, namespace: settings.namespace });
}
