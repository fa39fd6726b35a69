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
  refreshPolicy: { marginSeconds: number; jitterSeconds: number };
  /** Set only by continue-as-new: what the previous run knew. */
  carriedState?: ConnectionState;
}

export interface ConnectionState {
  status: ConnectionStatus;
  tokenVersion: number;
  accessTokenExpiresAt?: number;
  refreshDueAt?: number;
  lastRefreshedAt?: number;
  refreshCount: number;
  lastError?: { kind: string; message: string; at: number };
  pendingAuthorizationId?: string;
  disconnectRequest?: DisconnectSignal & { receivedAt: number };
  invalidation?: InvalidatedSignal & { receivedAt: number };
}

export interface AuthorizeSignal {
  authorizationId: string;
}

export interface DisconnectSignal {
  requestedBy: { type: 'user' | 'operator' | 'system'; id?: string };
}

export interface InvalidatedSignal {
  reason: string;
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
export const disconnectSignal = defineSignal<[DisconnectSignal]>('disconnect');
/** The provider told us the grant is gone (RISC, revocation notices): needs_reauth without waiting for a refresh to fail. */
export const invalidatedSignal = defineSignal<[InvalidatedSignal]>('invalidated');
export const statusQuery = defineQuery<ConnectionState>('status');
/** Callers that need a usable access token ask the owner, which refreshes first when the token is close to expiry. */
export const freshTokenUpdate = defineUpdate<FreshTokenAnswer, [{ minValiditySeconds: number }]>('freshToken');
