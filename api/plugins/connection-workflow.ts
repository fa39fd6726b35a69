import type { Config } from '../../platform/config';
import type { ConnectionRow } from '../../db/queries/connections';
import type { ConnectionWorkflowInput } from '../../workflows/connection-messages';

/** What every `signalWithStart` of a connection workflow starts it with: ids, the refresh policy and the revocation window, never a secret. */
export function connectionWorkflowInput(config: Config, connection: ConnectionRow): ConnectionWorkflowInput {
  return {
    connectionId: connection.id,
    provider: connection.provider,
    userId: connection.userId,
    refreshPolicy: { ...config.tokenRefresh },
    revocationWindowSeconds: config.upstreamRevocationWindowSeconds,
  };
}
