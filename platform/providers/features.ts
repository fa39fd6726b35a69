import type { DatabasePool } from 'slonik';
import type { ConnectionRow } from '../../db/queries/connections';
import type { SyncCounts } from '../../db/queries/sync';
import type { AuditLog } from '../audit';
import type { IntegrationCrypto } from '../integration-crypto';
import type { ProviderId } from './provider';

/**
 * What the generic connection activities hand a provider's features: the connection, a usable access
 * token (the workflow refreshes first when it is close to expiry), and the services to store results.
 * Throw ProviderError for provider failures: its kind decides between retry and stop.
 */
export interface ConnectionContext {
  connection: ConnectionRow;
  accessToken: string;
  db: DatabasePool;
  crypto: IntegrationCrypto;
  audit: AuditLog;
  clock: () => Date;
  /** Long syncs report progress, so a worker that died is noticed within the heartbeat timeout. */
  heartbeat(progress?: string): void;
}

/** When the earliest of the connection's subscriptions must be renewed (epoch ms), or null when none needs it. */
export interface SubscriptionPlan {
  renewAt: number | null;
}

/** Why a renewal runs: its time came, or the provider told us (Microsoft lifecycle events). */
export type RenewalReason = 'due' | 'reauthorization_required' | 'subscription_removed';

export interface SyncRequest {
  reason: string;
  /** Drop what is stored and read everything again (Microsoft `missed`, an operator's request). */
  full: boolean;
}

/**
 * Everything a provider does for a connection beyond its tokens. Every method is idempotent: Temporal
 * retries activities, so a second call after a first that half-succeeded must end in the same state.
 */
export interface ProviderFeatures {
  /** How often the workflow syncs without being asked; null when only webhooks trigger syncs. */
  readonly syncIntervalSeconds: number | null;
  /** After every (re)authorization: listing mapping, webhook subscriptions. Existing live subscriptions are kept. */
  setUp(context: ConnectionContext): Promise<SubscriptionPlan>;
  renewSubscriptions(context: ConnectionContext, reason: RenewalReason, subscriptionId?: string): Promise<SubscriptionPlan>;
  /** On disconnect, before the tokens go: stop every subscription the provider holds for us. */
  stopSubscriptions(context: ConnectionContext): Promise<void>;
  sync(context: ConnectionContext, request: SyncRequest): Promise<SyncCounts>;
}

export type ProviderFeaturesRegistry = Partial<Record<ProviderId, ProviderFeatures>>;
