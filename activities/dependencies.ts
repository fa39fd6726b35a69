import type { CommonQueryMethods, DatabasePool } from 'slonik';
import type { AuditAction, AuditLog } from '../platform/audit';
import type { IntegrationCrypto } from '../platform/integration-crypto';
import type { OAuthProviderAdapter, ProviderAdapter, ProviderRegistry } from '../platform/providers/provider';
import type { ProviderFeatures, ProviderFeaturesRegistry } from '../platform/providers/features';
import { ApplicationFailure } from '@temporalio/activity';
import { findConnection, transitionConnectionStatus, type ConnectionStatus } from '../db/queries/connections';
import { FailureType } from './failure-types';
import { ProviderError } from '../platform/providers/provider-error';
import type { ProviderTokens } from '../platform/providers/oauth-tokens';
import type { VoicePlatforms } from '../platform/voice/voice-platform';
import type { SsoSessionSync } from '../platform/sso/backchannel-delivery';
import type { Config } from '../platform/config';

/** Everything activities touch, handed in so tests can pass fakes (a simulated clock, a test database). */
export interface ActivityDependencies {
  db: DatabasePool;
  crypto: IntegrationCrypto;
  providers: ProviderRegistry;
  /** What each provider does beyond tokens: webhook subscriptions and data sync. */
  features: ProviderFeaturesRegistry;
  audit: AuditLog;
  /** Login with Amazon, the Alexa event gateway and Home Graph: the voice-device workflow's platforms. */
  voice: VoicePlatforms;
  /** The issuers, the portal client and both servers' signing keys: the SSO session workflow's back-channel logouts. */
  sso: SsoSessionSync;
  /** How the token writers' lease lives and is renewed (activities/token-lease.ts). */
  tokenLease: Config['tokenLease'];
  clock: () => Date;
}

/** What workflows learn about a connection's tokens: versions and times, never the tokens. */
export interface TokenState {
  tokenVersion: number;
  accessTokenExpiresAt: number;
}

export function providerAdapter(providers: ProviderRegistry, provider: string): ProviderAdapter {
  const adapter = providers[provider as keyof ProviderRegistry];
  // A worker without credentials for a provider cannot help; another worker (or a fixed deployment) can.
  if (!adapter) throw ApplicationFailure.retryable(`provider ${provider} is not configured on this worker`, FailureType.providerUnavailable);
  return adapter;
}

/** Like a missing adapter: this worker lacks the provider's settings; another worker (or a fixed deployment) can. */
export function providerFeatures(features: ProviderFeaturesRegistry, provider: string): ProviderFeatures {
  const found = features[provider as keyof ProviderFeaturesRegistry];
  if (!found) throw ApplicationFailure.retryable(`provider ${provider} is not configured on this worker`, FailureType.providerUnavailable);
  return found;
}

export function oauthProviderAdapter(providers: ProviderRegistry, provider: string): OAuthProviderAdapter {
  const adapter = providerAdapter(providers, provider);
  if (adapter.kind !== 'oauth') throw ApplicationFailure.nonRetryable(`${provider} does not use OAuth authorization codes`, FailureType.authorizationRejected);
  return adapter;
}

/** Expiry counts from before the request when the provider gives a lifetime: its clock started no earlier, so we err early. */
export function accessTokenExpiry(tokens: Pick<ProviderTokens, 'expiresInSeconds' | 'expiresAt'>, requestedAt: Date): Date {
  return tokens.expiresAt ?? new Date(requestedAt.getTime() + tokens.expiresInSeconds * 1000);
}

/**
 * A provider failure as an activity failure the workflow can tell apart (design invariant 4): a revoked
 * grant is final, a refusal an operator must fix is not retried at once, anything else is retried.
 */
export function providerActivityFailure(error: unknown): ApplicationFailure {
  const message = error instanceof Error ? error.message : String(error);
  const kind = error instanceof ProviderError ? error.kind : 'unknown';
  if (kind === 'invalid_grant') return ApplicationFailure.nonRetryable(message, FailureType.grantRevoked);
  if (kind === 'invalid_client' || kind === 'protocol') return ApplicationFailure.nonRetryable(message, FailureType.providerRejected);
  return retryableProviderFailure(error);
}

/** Turns a provider failure that is not final into a retryable activity failure with a readable message. */
export function retryableProviderFailure(error: unknown): ApplicationFailure {
  const message = error instanceof Error ? error.message : String(error);
  const kind = error instanceof ProviderError ? error.kind : 'unknown';
  return ApplicationFailure.create({ message, type: FailureType.providerUnavailable, details: [{ kind }] });
}

/** The token state already stored: what a retried activity answers when its first attempt had finished the work. */
export async function currentTokenState(db: CommonQueryMethods, connectionId: string): Promise<TokenState> {
  const connection = await findConnection(db, connectionId);
  if (!connection || connection.accessTokenExpiresAt === null || connection.status === 'disconnected') {
    throw ApplicationFailure.nonRetryable('connection holds no tokens', FailureType.connectionGone);
  }
  return { tokenVersion: connection.tokenVersion, accessTokenExpiresAt: connection.accessTokenExpiresAt };
}

/**
 * Moves a connection between statuses and audits the move in the same transaction. Only the call that
 * makes the move writes the audit row, so a retried activity never audits twice.
 */
export async function transitionAndAudit(
  { db, audit }: Pick<ActivityDependencies, 'db' | 'audit'>,
  move: {
    connectionId: string;
    to: ConnectionStatus;
    from: ConnectionStatus[];
    atVersion?: number;
    action: AuditAction;
    outcome: 'success' | 'failure';
    reason: string;
    details?: Record<string, string | number | boolean>;
  },
): Promise<boolean> {
  const connection = await findConnection(db, move.connectionId);
  if (!connection) return false;
  return db.transaction(async (transaction) => {
    if (!(await transitionConnectionStatus(transaction, move.connectionId, move.to, move.from, move.atVersion))) return false;
    await audit.record(
      {
        action: move.action,
        outcome: move.outcome,
        actor: { type: 'system' },
        userId: connection.userId,
        provider: connection.provider,
        connectionId: move.connectionId,
        details: { reason: move.reason, ...move.details },
      },
      transaction,
    );
    return true;
  });
}
