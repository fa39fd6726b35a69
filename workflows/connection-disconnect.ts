import { ActivityFailure, allHandlersFinished, condition, log } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { bookkeeping, describeFailure, revocation, revocationWindowSeconds, subscriptionStop } from './connection-activities';
import type { ConnectionOutcome } from './connection-messages';
import type { ConnectionContext } from './connection-tokens';
import type { UnkeptTokenRevocation } from './connection-unkept-tokens';

/**
 * The end of a connection: the provider's webhooks stopped, the grant revoked upstream where the
 * provider has a revocation, so are tokens set aside and not kept, then our copy wiped, each step's
 * outcome recorded. A step that fails does not keep the others from running.
 */
export async function disconnect(connection: ConnectionContext, unkeptTokens: UnkeptTokenRevocation): Promise<ConnectionOutcome> {
  const { state } = connection;
  const { connectionId } = connection.input;
  const request = { connectionId, requestedBy: state.disconnectRequest!.requestedBy };
  state.status = 'disconnecting';
  connection.publishSearchAttributes();
  if (connection.providerLifecycle) {
    try {
      await subscriptionStop.stopConnectionSubscriptions({ connectionId });
    } catch (error) {
      if (!(error instanceof ActivityFailure)) throw error;
      log.warn('webhook subscriptions could not be stopped upstream; they lapse on their own', { connectionId, kind: describeFailure(error).kind });
      await bookkeeping.abandonConnectionSubscriptions({ connectionId });
    }
  }
  let outcome: Awaited<ReturnType<Activities['revokeConnectionUpstream']>>;
  let revocationError: string | undefined;
  try {
    outcome = await revocation(revocationWindowSeconds(connection.input)).revokeConnectionUpstream(request);
  } catch (error) {
    if (!(error instanceof ActivityFailure)) throw error;
    outcome = 'failed';
    revocationError = describeFailure(error).message;
  }
  // After the grant's revocation: the connection is no longer live, so no token of it is kept back as shared.
  await unkeptTokens.beforeWipe();
  await bookkeeping.wipeDisconnectedConnection({ ...request, revocation: outcome, ...(revocationError ? { revocationError } : {}) });
  state.status = 'disconnected';
  connection.publishSearchAttributes();
  await condition(allHandlersFinished);
  return { status: 'disconnected', revocation: outcome };
}
