import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';

/**
 * The connection workflow's messages. Every one carries ids, times and statuses only: tokens, codes
 * and verifiers stay in Postgres (design invariant 1). The API imports these to talk to the workflow.
 */

export type ConnectionStatus = 'pending' | 'active' | 'needs_reauth' | 'disconnecting' | 'disconnected' | 'failed';

export interface ConnectionWorkflowInput {
  connectionId: string;
  provider: string;
  userId: string;
  refreshPolicy: RefreshPolicy;
  /**
   * How long a provider outage is waited out to revoke upstream (UPSTREAM_REVOCATION_WINDOW_SECONDS);
   * absent in runs started before the setting existed, which use its default.
   */
  revocationWindowSeconds?: number;
  /** Set only by continue-as-new: what the previous run knew. */
  carriedState?: ConnectionState;
}

/**
 * When tokens are refreshed and how failed refreshes are spaced (the TOKEN_REFRESH_* settings). The
 * fields after the first two are absent in runs started before they existed; those use the defaults.
 */
export interface RefreshPolicy {
  /** The most a refresh starts ahead of the access token's expiry. */
  marginSeconds: number;
  /** Up to this much earlier still, at random (bounded by a share of the margin), so refreshes do not bunch. */
  jitterSeconds: number;
  /** The share of the token's lifetime left when its refresh starts, between the least and the most margin. */
  marginFraction?: number;
  /** The least margin, unless that is more than half the token's lifetime. */
  minMarginSeconds?: number;
  /** Failed tries are spaced so that at least this many fit before the access token expires. */
  triesBeforeExpiry?: number;
}

export interface ConnectionState {
  status: ConnectionStatus;
  tokenVersion: number;
  accessTokenExpiresAt?: number;
  refreshDueAt?: number;
  /**
   * How long before its expiry the current access token was planned to be refreshed; unlike
   * refreshDueAt, a failed refresh leaves it as it was. Absent in state carried from older runs.
   */
  refreshMarginMs?: number;
  lastRefreshedAt?: number;
  refreshCount: number;
  lastError?: { kind: string; message: string; at: number };
  pendingAuthorizationId?: string;
  /** The pending authorization's codeExpiresAt, if its signal had one. */
  pendingCodeExpiresAt?: number;
  /** Machine-account credentials (Booking.com) were stored and wait for their first token. */
  pendingActivation?: boolean;
  disconnectRequest?: DisconnectSignal & { receivedAt: number };
  invalidation?: InvalidatedSignal & { receivedAt: number };
  /** Set after each (re)authorization: the provider's setup (subscriptions, listing mapping) is due then. */
  setUpDueAt?: number;
  /** The setup has run once for this connection (runs from before provider work existed have not). */
  providerSetUpDone?: boolean;
  renewSubscriptionsAt?: number;
  /** Why the next renewal runs early (a Microsoft lifecycle event), if it does. */
  renewalRequest?: ProviderEventSignal;
  syncIntervalSeconds?: number;
  nextSyncAt?: number;
  syncRequest?: SyncRequestSignal;
  /** The last failure of the setup or a renewal, apart from token errors. */
  providerError?: { kind: string; message: string; at: number };
  sync?: SyncState;
}

export interface SyncState {
  runCount: number;
  lastRunAt?: number;
  lastOutcome?: 'succeeded' | 'failed';
  lastCounts?: { created: number; updated: number; deleted: number; fullResync: boolean };
  lastError?: { kind: string; message: string; at: number };
}

export interface AuthorizeSignal {
  authorizationId: string;
  /**
   * When the provider stops accepting the code (the callback's time plus AUTHORIZATION_CODE_LIFETIME_SECONDS);
   * absent in signals sent before it existed.
   */
  codeExpiresAt?: number;
}

export interface DisconnectSignal {
  requestedBy: { type: 'user' | 'operator' | 'system'; id?: string };
}

export interface InvalidatedSignal {
  reason: string;
}

/**
 * What a verified webhook told us: data changed (sync), notifications were missed (sync), or a
 * subscription needs attention (Microsoft lifecycle events).
 */
export interface ProviderEventSignal {
  kind: 'changed' | 'missed' | 'reauthorization_required' | 'subscription_removed';
  subscriptionId?: string;
}

export interface SyncRequestSignal {
  reason: string;
  /** Drop what is stored and read everything again. */
  full: boolean;
}

export interface FreshTokenAnswer {
  tokenVersion: number;
  accessTokenExpiresAt: number;
}

export interface ConnectionOutcome {
  status: 'disconnected' | 'failed';
  revocation?: string;
}

/** A code for this connection is waiting in integration_authorizations (first connect or re-consent). */
export const authorizeSignal = defineSignal<[AuthorizeSignal]>('authorize');
/** Machine-account credentials for this connection are stored (first connect or new credentials). */
export const credentialsStoredSignal = defineSignal('credentialsStored');
export const disconnectSignal = defineSignal<[DisconnectSignal]>('disconnect');
/** The provider told us the grant is gone (RISC, revocation notices): needs_reauth without waiting for a refresh to fail. */
export const invalidatedSignal = defineSignal<[InvalidatedSignal]>('invalidated');
/** A verified webhook for this connection; webhook endpoints answer at once and leave the work to the workflow. */
export const providerEventSignal = defineSignal<[ProviderEventSignal]>('providerEvent');
/** A user or operator asks for a sync now; requests that arrive during a sync are folded into one more run. */
export const syncRequestSignal = defineSignal<[SyncRequestSignal]>('syncRequest');
export const statusQuery = defineQuery<ConnectionState>('status');
/** Callers that need a usable access token ask the owner, which refreshes first when the token is close to expiry. */
export const freshTokenUpdate = defineUpdate<FreshTokenAnswer, [{ minValiditySeconds: number }]>('freshToken');
/** An operator's forced refresh (admin CLI): runs through the owner like every other refresh. */
export const refreshNowUpdate = defineUpdate<FreshTokenAnswer, []>('refreshNow');
