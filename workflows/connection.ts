import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  patched,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { disconnect } from './connection-disconnect';
import {
  authorizeSignal,
  credentialsStoredSignal,
  disconnectSignal,
  freshTokenUpdate,
  invalidatedSignal,
  providerEventSignal,
  refreshNowUpdate,
  statusQuery,
  syncRequestSignal,
  type ConnectionOutcome,
  type ConnectionState,
  type ConnectionWorkflowInput,
} from './connection-messages';
import { ProviderWork } from './connection-provider-work';
import { ConnectionTokens, type ConnectionContext } from './connection-tokens';
import { UnkeptTokenRevocation } from './connection-unkept-tokens';
import { CONNECTION_STATUS, LAST_ERROR_KIND, NEXT_REFRESH_AT, PROVIDER, USER_ID } from './search-attributes';

/** Each run stays far below Temporal's history limits; the state carried over is a few ids and times. */
const CYCLES_PER_RUN = 100;
/**
 * A workflow evicted from the worker's cache is replayed from its run's history at its next task, and
 * Temporal sends that history again: a run ends after about twenty refresh cycles (12 events each), so
 * a replay reads at most this much instead of the ~1,200 events of a hundred cycles.
 */
const EVENTS_PER_RUN = 250;
/** Runs from before ended after CYCLES_PER_RUN turns of the loop, whatever their length. */
const SHORT_RUNS_PATCH = 'short-runs';
/** The update refuses to promise more validity than a fresh token of any provider has. */
const MAX_REQUESTED_VALIDITY_SECONDS = 50 * 60;
/**
 * Runs started before webhooks, syncs and search attributes existed replay without them and pick
 * them up at their next continue-as-new (see README, "Changing a workflow that has live runs").
 */
const PROVIDER_LIFECYCLE_PATCH = 'provider-lifecycle';

/**
 * The life of one connection to an external provider, from its first authorization code to its
 * disconnect. It is the only writer of the connection's tokens: it refreshes them before they expire,
 * notices when the grant is gone, and on disconnect stops the provider's webhooks, revokes upstream and
 * wipes them. In between it keeps the provider's webhook subscriptions alive and syncs the provider's
 * data, on a schedule and whenever a webhook says something changed, one sync at a time.
 */
export async function connectionWorkflow(input: ConnectionWorkflowInput): Promise<ConnectionOutcome> {
  const state: ConnectionState = input.carriedState ?? { status: 'pending', tokenVersion: 0, refreshCount: 0 };
  let published: string | undefined;
  const connection: ConnectionContext = { input, state, providerLifecycle: patched(PROVIDER_LIFECYCLE_PATCH), publishSearchAttributes };
  const unkeptTokens = new UnkeptTokenRevocation(connection);
  const tokens = new ConnectionTokens(connection, unkeptTokens);
  const providerWork = new ProviderWork(connection, tokens);

  setHandler(authorizeSignal, ({ authorizationId, codeExpiresAt }) => {
    state.pendingAuthorizationId = authorizationId;
    state.pendingCodeExpiresAt = codeExpiresAt;
  });
  setHandler(credentialsStoredSignal, () => {
    state.pendingActivation = true;
  });
  setHandler(disconnectSignal, (request) => {
    state.disconnectRequest ??= { ...request, receivedAt: Date.now() };
    tokens.cancelRefresh();
  });
  setHandler(invalidatedSignal, ({ reason }) => {
    state.invalidation ??= { reason, receivedAt: Date.now() };
  });
  setHandler(providerEventSignal, (event) => {
    if (event.kind === 'changed' || event.kind === 'missed') providerWork.requestSync({ reason: `webhook:${event.kind}`, full: false });
    else {
      state.renewalRequest = event;
      state.renewSubscriptionsAt = Date.now();
    }
  });
  setHandler(syncRequestSignal, (request) => providerWork.requestSync(request));
  setHandler(statusQuery, () => state);
  setHandler(
    refreshNowUpdate,
    async () => {
      await tokens.refreshOnce();
      assertActive();
      return { tokenVersion: state.tokenVersion, accessTokenExpiresAt: state.accessTokenExpiresAt! };
    },
    { validator: () => assertActive() },
  );
  setHandler(
    freshTokenUpdate,
    async ({ minValiditySeconds }) => {
      const validEnough = () => state.accessTokenExpiresAt! - Date.now() >= minValiditySeconds * 1000;
      if (!validEnough()) await tokens.refreshOnce();
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

  if (connection.providerLifecycle) {
    describeForOperators();
    // A connection that was active before provider work existed gets its setup on its first patched run.
    if (state.status === 'active' && !state.providerSetUpDone && state.setUpDueAt === undefined) state.setUpDueAt = Date.now();
  }

  for (let cycle = 1; ; cycle++) {
    publishSearchAttributes();
    if (state.disconnectRequest) return disconnect(connection, unkeptTokens);
    if (state.status === 'disconnected') return { status: 'disconnected' };
    if (state.pendingAuthorizationId || state.pendingActivation) {
      const authorizationId = state.pendingAuthorizationId;
      await (authorizationId ? tokens.authorize(authorizationId, state.pendingCodeExpiresAt) : tokens.activateMachineAccount());
      if (state.status === 'failed') {
        // What the failed exchange set aside is revoked while this workflow still exists to do it.
        await unkeptTokens.settled();
        if (tokens.takeNewerAuthorizationAfterFailure()) continue;
        publishSearchAttributes();
        return { status: 'failed' };
      }
      continue;
    }
    if (state.invalidation) {
      if (state.status === 'active') await tokens.markNeedsReauth(state.invalidation.reason, 'the provider reported the grant revoked');
      state.invalidation = undefined;
      continue;
    }

    if (state.status === 'active' && connection.providerLifecycle && Date.now() >= state.refreshDueAt!) {
      // A due refresh goes first: provider work can always wait a turn, an expiring token cannot.
      await tokens.refreshOnce();
    } else if (state.status === 'active' && providerWork.due()) {
      await providerWork.step();
    } else if (state.status === 'active') {
      const interrupted = await condition(somethingToDo, Math.max(1, providerWork.nextWakeAt() - Date.now()));
      // The timer was armed before any refresh the update made meanwhile; only a due refresh runs.
      if (!interrupted && Date.now() >= state.refreshDueAt!) await tokens.refreshOnce();
    } else {
      // pending or needs_reauth: nothing to keep alive until the user authorizes again or disconnects.
      await condition(somethingToDo);
    }

    if (cycle >= CYCLES_PER_RUN || workflowInfo().continueAsNewSuggested || (workflowInfo().historyLength >= EVENTS_PER_RUN && patched(SHORT_RUNS_PATCH))) {
      await condition(allHandlersFinished);
      if (!somethingToDo() && !unkeptTokens.inFlight) return continueAsNew<typeof connectionWorkflow>({ ...input, carriedState: state });
    }
  }

  function somethingToDo(): boolean {
    return Boolean(state.disconnectRequest || state.pendingAuthorizationId || state.pendingActivation || state.invalidation) || (state.status === 'active' && providerWork.due());
  }

  /** The human facts Temporal Web shows in the memo; set once, carried over by continue-as-new. */
  function describeForOperators(): void {
    if (workflowInfo().memo?.connectionId) return;
    upsertMemo({ connectionId: input.connectionId, provider: input.provider, userId: input.userId, firstStartedAt: new Date(workflowInfo().startTime).toISOString() });
  }

  /** Only changes are written: every upsert is an event in the history. */
  function publishSearchAttributes(): void {
    if (!connection.providerLifecycle) return;
    const lastErrorKind = state.lastError?.kind ?? state.providerError?.kind ?? state.sync?.lastError?.kind ?? null;
    const nextRefreshAt = state.status === 'active' && state.refreshDueAt !== undefined ? new Date(state.refreshDueAt) : null;
    const fingerprint = JSON.stringify([state.status, nextRefreshAt, lastErrorKind]);
    if (fingerprint === published) return;
    published = fingerprint;
    upsertSearchAttributes([
      { key: PROVIDER, value: input.provider },
      { key: USER_ID, value: input.userId },
      { key: CONNECTION_STATUS, value: state.status },
      { key: NEXT_REFRESH_AT, value: nextRefreshAt },
      { key: LAST_ERROR_KIND, value: lastErrorKind },
    ]);
  }

  function assertActive(): void {
    if (state.status !== 'active' || state.disconnectRequest) {
      throw ApplicationFailure.nonRetryable(`connection is ${state.disconnectRequest ? 'disconnecting' : state.status}`, 'ConnectionNotActive');
    }
  }
}
