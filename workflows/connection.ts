import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities, TokenState } from '../activities';
import { FailureType, NON_RETRYABLE_FAILURES } from '../activities/failure-types';
import {
  authorizeSignal,
  disconnectSignal,
  freshTokenUpdate,
  invalidatedSignal,
  statusQuery,
  type ConnectionOutcome,
  type ConnectionState,
  type ConnectionWorkflowInput,
} from './connection-messages';

/** Each run stays far below Temporal's history limits; the state carried over is a few ids and times. */
const CYCLES_PER_RUN = 100;
const SLOW_RETRY_MS = 5 * 60 * 1000;
/** The update refuses to promise more validity than a fresh token of any provider has. */
const MAX_REQUESTED_VALIDITY_SECONDS = 50 * 60;

const codeExchange = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // Authorization codes live minutes, so retrying for longer would only fail later.
  retry: { initialInterval: '2 seconds', maximumInterval: '30 seconds', maximumAttempts: 8, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

const tokenRefresh = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // No attempt limit: a provider outage must not cost the user the connection (design invariant 4).
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

const revocation = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // Wiping our copy ends our only way to revoke, so a provider outage is waited out for a while;
  // after that the disconnect finishes anyway and records that revocation failed.
  scheduleToCloseTimeout: '2 hours',
  retry: { initialInterval: '5 seconds', maximumInterval: '5 minutes', nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
});

/**
 * The life of one connection to an external provider, from its first authorization code to its
 * disconnect. It is the only writer of the connection's tokens: it refreshes them before they expire,
 * notices when the grant is gone, and on disconnect revokes upstream and wipes them.
 */
export async function connectionWorkflow(input: ConnectionWorkflowInput): Promise<ConnectionOutcome> {
  const { connectionId } = input;
  const state: ConnectionState = input.carriedState ?? { status: 'pending', tokenVersion: 0, refreshCount: 0 };
  let refreshInFlight: Promise<void> | undefined;
  let refreshScope: CancellationScope | undefined;
  let tokenWriter: Promise<void> = Promise.resolve();

  setHandler(authorizeSignal, ({ authorizationId }) => {
    state.pendingAuthorizationId = authorizationId;
  });
  setHandler(disconnectSignal, (request) => {
    state.disconnectRequest ??= { ...request, receivedAt: Date.now() };
    refreshScope?.cancel();
  });
  setHandler(invalidatedSignal, ({ reason }) => {
    state.invalidation ??= { reason, receivedAt: Date.now() };
  });
  setHandler(statusQuery, () => state);
  setHandler(
    freshTokenUpdate,
    async ({ minValiditySeconds }) => {
      const validEnough = () => state.accessTokenExpiresAt! - Date.now() >= minValiditySeconds * 1000;
      if (!validEnough()) await refreshOnce();
      assertActive();
      if (!validEnough()) throw ApplicationFailure.nonRetryable('the access token could not be renewed; see the last error', 'TokenNotRenewed');
      return { tokenVersion: state.tokenVersion, accessTokenExpiresAt: state.accessTokenExpiresAt! };
    },
    {
      // Refused updates stay out of history.
      validator: ({ minValiditySeconds }) => {
        if (!Number.isInteger(minValiditySeconds) || minValiditySeconds < 0 || minValiditySeconds > MAX_REQUESTED_VALIDITY_SECONDS) {
          throw new Error(`minValiditySeconds must be an integer from 0 to ${MAX_REQUESTED_VALIDITY_SECONDS}`);
        }
        assertActive();
      },
    },
  );

  for (let cycle = 1; ; cycle++) {
    if (state.disconnectRequest) return disconnect();
    if (state.status === 'disconnected') return { status: 'disconnected' };
    if (state.pendingAuthorizationId) {
      const authorizationId = state.pendingAuthorizationId;
      await exclusively(() => authorize(authorizationId));
      if (state.status === 'failed') return { status: 'failed' };
      continue;
    }
    if (state.invalidation) {
      if (state.status === 'active') await markNeedsReauth(state.invalidation.reason, 'the provider reported the grant revoked');
      state.invalidation = undefined;
      continue;
    }

    if (state.status === 'active') {
      const interrupted = await condition(somethingToDo, Math.max(1, state.refreshDueAt! - Date.now()));
      // The timer was armed before any refresh the update made meanwhile; only a due refresh runs.
      if (!interrupted && Date.now() >= state.refreshDueAt!) await refreshOnce();
    } else {
      // pending or needs_reauth: nothing to keep alive until the user authorizes again or disconnects.
      await condition(somethingToDo);
    }

    if (cycle >= CYCLES_PER_RUN || workflowInfo().continueAsNewSuggested) {
      await condition(allHandlersFinished);
      if (!somethingToDo()) return continueAsNew<typeof connectionWorkflow>({ ...input, carriedState: state });
    }
  }

  function somethingToDo(): boolean {
    return Boolean(state.disconnectRequest || state.pendingAuthorizationId || state.invalidation);
  }

  function assertActive(): void {
    if (state.status !== 'active' || state.disconnectRequest) {
      throw ApplicationFailure.nonRetryable(`connection is ${state.disconnectRequest ? 'disconnecting' : state.status}`, 'ConnectionNotActive');
    }
  }

  function applyTokens(tokens: TokenState): void {
    const now = Date.now();
    const margin = (input.refreshPolicy.marginSeconds + Math.random() * input.refreshPolicy.jitterSeconds) * 1000;
    state.tokenVersion = tokens.tokenVersion;
    state.accessTokenExpiresAt = tokens.accessTokenExpiresAt;
    // A token that lives shorter than the margin is still given half its life, so refreshes cannot spin.
    state.refreshDueAt = Math.max(tokens.accessTokenExpiresAt - margin, now + (tokens.accessTokenExpiresAt - now) / 2);
  }

  async function authorize(authorizationId: string): Promise<void> {
    state.pendingAuthorizationId = undefined;
    try {
      applyTokens(await codeExchange.exchangeAuthorizationCode({ connectionId, authorizationId }));
      state.status = 'active';
      state.lastError = undefined;
      state.invalidation = undefined;
    } catch (error) {
      if (!(error instanceof ActivityFailure)) throw error;
      state.lastError = describeFailure(error);
      log.warn('authorization could not be completed', { connectionId, kind: state.lastError.kind });
      // A re-consent that fails leaves the existing grant as it was; a first one leaves nothing to keep.
      if (state.status === 'pending') {
        await bookkeeping.markConnectionFailed({ connectionId, reason: state.lastError.kind });
        state.status = 'failed';
      }
    }
  }

  /** Code exchanges and refreshes write the same token version, so they run one after the other. */
  function exclusively(work: () => Promise<void>): Promise<void> {
    const run = tokenWriter.then(work);
    tokenWriter = run.catch(() => undefined);
    return run;
  }

  /** Both the timer and the freshToken update come here, so two refreshes never run at once. */
  function refreshOnce(): Promise<void> {
    refreshInFlight ??= exclusively(refreshTokens).finally(() => {
      refreshInFlight = undefined;
    });
    return refreshInFlight;
  }

  async function refreshTokens(): Promise<void> {
    if (state.status !== 'active' || state.disconnectRequest) return;
    const scope = new CancellationScope();
    refreshScope = scope;
    try {
      applyTokens(await scope.run(() => tokenRefresh.refreshConnectionTokens({ connectionId, expectedVersion: state.tokenVersion })));
      state.refreshCount += 1;
      state.lastRefreshedAt = Date.now();
      state.lastError = undefined;
    } catch (error) {
      if (isCancellation(error)) return; // a disconnect arrived; the main loop handles it
      if (!(error instanceof ActivityFailure)) throw error;
      state.lastError = describeFailure(error);
      if (state.lastError.kind === FailureType.grantRevoked) await markNeedsReauth('invalid_grant', state.lastError.message);
      // Whatever removed the connection underneath us, finishing the disconnect leaves nothing behind.
      else if (state.lastError.kind === FailureType.connectionGone) state.disconnectRequest ??= { requestedBy: { type: 'system' }, receivedAt: Date.now() };
      // A refusal that needs an operator (our credentials, an unreadable secret): keep the grant, try again slowly.
      else state.refreshDueAt = Date.now() + SLOW_RETRY_MS;
    } finally {
      refreshScope = undefined;
    }
  }

  async function markNeedsReauth(reason: string, message: string): Promise<void> {
    await bookkeeping.markConnectionNeedsReauth({ connectionId, reason });
    state.status = 'needs_reauth';
    state.lastError = { kind: reason, message, at: Date.now() };
  }

  async function disconnect(): Promise<ConnectionOutcome> {
    const request = { connectionId, requestedBy: state.disconnectRequest!.requestedBy };
    state.status = 'disconnecting';
    let outcome: Awaited<ReturnType<Activities['revokeConnectionUpstream']>>;
    let revocationError: string | undefined;
    try {
      outcome = await revocation.revokeConnectionUpstream(request);
    } catch (error) {
      if (!(error instanceof ActivityFailure)) throw error;
      outcome = 'failed';
      revocationError = describeFailure(error).message;
    }
    await bookkeeping.wipeDisconnectedConnection({ ...request, revocation: outcome, ...(revocationError ? { revocationError } : {}) });
    state.status = 'disconnected';
    await condition(allHandlersFinished);
    return { status: 'disconnected', revocation: outcome };
  }
}

function describeFailure(error: ActivityFailure): { kind: string; message: string; at: number } {
  const cause = error.cause;
  return cause instanceof ApplicationFailure
    ? { kind: cause.type ?? 'ApplicationFailure', message: cause.message, at: Date.now() }
    : { kind: cause?.name ?? 'ActivityFailure', message: cause?.message ?? error.message, at: Date.now() };
}
