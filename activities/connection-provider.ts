import { ApplicationFailure, Context } from '@temporalio/activity';
import { findConnection, readConnectionSecrets, type ConnectionStatus } from '../db/queries/connections';
import { activeWebhookSubscriptions, endWebhookSubscription } from '../db/queries/webhook-subscriptions';
import { claimSyncRun, finishSyncRun, type SyncCounts } from '../db/queries/sync';
import { connectionColumn } from '../db/encrypted-columns';
import { MIN_ACCESS_TOKEN_VALIDITY_MS } from '../platform/access-token-validity';
import type { ConnectionContext, ProviderFeatures, RenewalReason, SubscriptionPlan } from '../platform/providers/features';
import { ProviderError } from '../platform/providers/provider-error';
import { FailureType } from './failure-types';
import { providerActivityFailure, providerFeatures, retryableProviderFailure, type ActivityDependencies } from './dependencies';

/** Longer than the workflow's start-to-close timeout of a sync (15 minutes): past it, no attempt can still run. */
const SYNC_LEASE_MS = 16 * 60 * 1000;

export interface ProviderSetUp {
  renewSubscriptionsAt: number | null;
  syncIntervalSeconds: number | null;
}

export interface SyncSummary extends SyncCounts {
  runId: number;
  finishedAt: number;
}

/**
 * The provider-specific half of a connection's life (webhook subscriptions, data sync) behind one set
 * of activities, so the connection workflow tells the same story for every provider.
 */
export function createProviderActivities(dependencies: ActivityDependencies) {
  const { db, features, clock } = dependencies;

  async function contextFor(
    connectionId: string,
    allowed: ConnectionStatus[],
    options: { freshToken: boolean } = { freshToken: true },
  ): Promise<{ context: ConnectionContext; features: ProviderFeatures } | null> {
    const connection = await findConnection(db, connectionId);
    if (!connection) throw ApplicationFailure.nonRetryable('connection does not exist', FailureType.connectionGone);
    const found = providerFeatures(features, connection.provider);
    // A status that moved on since the workflow decided (a disconnect, a revoked grant) makes the step moot.
    if (!allowed.includes(connection.status)) return null;
    if (options.freshToken && (connection.accessTokenExpiresAt ?? 0) - clock().getTime() < MIN_ACCESS_TOKEN_VALIDITY_MS) {
      throw ApplicationFailure.nonRetryable('the stored access token has expired or is about to; the connection refreshes first', FailureType.accessTokenExpired);
    }
    const secrets = await readConnectionSecrets(db, connectionId);
    if (!secrets.accessTokenEnc) return null;
    let accessToken: string;
    try {
      accessToken = dependencies.crypto.decrypt(secrets.accessTokenEnc, connectionColumn(connectionId, 'access_token_enc'));
    } catch (error) {
      throw ApplicationFailure.nonRetryable(error instanceof Error ? error.message : String(error), FailureType.credentialUnreadable);
    }
    const context: ConnectionContext = {
      connection,
      accessToken,
      db,
      crypto: dependencies.crypto,
      audit: dependencies.audit,
      clock,
      heartbeat: (progress) => Context.current().heartbeat(progress),
    };
    return { context, features: found };
  }

  return {
    /** After every (re)authorization: what the provider needs set up, and when the workflow comes back. */
    async setUpConnection(input: { connectionId: string }): Promise<ProviderSetUp> {
      const found = await contextFor(input.connectionId, ['active']);
      if (!found) return { renewSubscriptionsAt: null, syncIntervalSeconds: null };
      const plan = await withProviderFailures(() => found.features.setUp(found.context));
      return { renewSubscriptionsAt: plan.renewAt, syncIntervalSeconds: found.features.syncIntervalSeconds };
    },

    async renewConnectionSubscriptions(input: { connectionId: string; reason: RenewalReason; subscriptionId?: string }): Promise<SubscriptionPlan> {
      const found = await contextFor(input.connectionId, ['active']);
      if (!found) return { renewAt: null };
      return withProviderFailures(() => found.features.renewSubscriptions(found.context, input.reason, input.subscriptionId));
    },

    /** Disconnect's first step, while the tokens still work: the provider stops calling us. */
    async stopConnectionSubscriptions(input: { connectionId: string }): Promise<void> {
      // A disconnect tries with whatever token is left: there is no refresh to wait for.
      const found = await contextFor(input.connectionId, ['active', 'needs_reauth', 'disconnecting'], { freshToken: false });
      if (found) await withProviderFailures(() => found.features.stopSubscriptions(found.context));
    },

    /**
     * Disconnect's fallback when stopping upstream was impossible: our side forgets the subscriptions
     * (their secrets go), so any notification that still arrives is refused. They lapse upstream on their own.
     */
    async abandonConnectionSubscriptions(input: { connectionId: string }): Promise<number> {
      const subscriptions = await activeWebhookSubscriptions(db, input.connectionId);
      for (const subscription of subscriptions) await endWebhookSubscription(db, subscription.id, 'failed');
      return subscriptions.length;
    },

    /**
     * One sync run, recorded in sync_runs. The workflow runs one at a time; the unfinished run's row also
     * keeps out an attempt that Temporal retried elsewhere while a presumed-dead worker was still at it.
     */
    async syncConnection(input: { connectionId: string; reason: string; full: boolean }): Promise<SyncSummary | null> {
      const found = await contextFor(input.connectionId, ['active']);
      if (!found) return null;
      const runId = await claimSyncRun(db, input.connectionId, input.reason, clock(), SYNC_LEASE_MS);
      if (runId === null) throw ApplicationFailure.retryable('another sync of this connection is still running', 'SyncInProgress');
      try {
        const counts = await withProviderFailures(() => found.features.sync(found.context, { reason: input.reason, full: input.full }));
        const finishedAt = clock();
        await finishSyncRun(db, runId, { outcome: 'succeeded', counts, finishedAt });
        return { ...counts, runId, finishedAt: finishedAt.getTime() };
      } catch (error) {
        const failure = error instanceof ApplicationFailure ? error : retryableProviderFailure(error);
        await finishSyncRun(db, runId, { outcome: 'failed', errorKind: failure.type ?? 'unknown', errorMessage: failure.message, finishedAt: clock() });
        throw failure;
      }
    },
  };
}

async function withProviderFailures<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (!(error instanceof ProviderError)) throw error;
    throw providerActivityFailure(error);
  }
}
