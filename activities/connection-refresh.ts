import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import {
  findConnection,
  readConnectionSecrets,
  recordConnectionError,
  storeTokensIfVersion,
  type ConnectionRow,
  type ConnectionStatus,
} from '../db/queries/connections';
import { isTransientDatabaseFault } from '../db/transient-faults';
import { ProviderError } from '../platform/providers/provider-error';
import type { ProviderTokens } from '../platform/providers/oauth-tokens';
import { FailureType, REFRESH_TOKEN_LOST_IN_FLIGHT } from './failure-types';
import { connectionColumn } from '../db/encrypted-columns';
import { accessTokenExpiry, currentTokenState, providerActivityFailure, providerAdapter, transitionAndAudit, type ActivityDependencies, type TokenState } from './dependencies';
import { heartbeating, TokenLease } from './token-lease';

/** The first pause before storing again after a database fault; pauses double up to the heartbeat interval. */
const FIRST_STORE_RETRY_PAUSE_MS = 100;

/** Only an active connection is refreshed; a connection on its way out tells the workflow to finish it. */
function assertRefreshable(status: ConnectionStatus): void {
  if (status === 'active') return;
  if (status === 'pending' || status === 'needs_reauth') throw ApplicationFailure.nonRetryable(`connection is ${status}`, FailureType.grantRevoked);
  throw ApplicationFailure.nonRetryable(`connection is ${status}`, FailureType.connectionGone);
}

export function createRefreshActivities({ db, crypto, providers, audit, clock, tokenLease }: ActivityDependencies) {
  return {
    /**
     * The only code that refreshes a connection's tokens, run only by the connection's workflow
     * (design invariants 2 and 3), and by one attempt at a time: the attempt holds the connection's
     * token lease across the provider call. The new tokens are stored, compare-and-set on the version,
     * before the activity completes; a retry whose earlier attempt already stored them just reports them.
     */
    refreshConnectionTokens(input: { connectionId: string; expectedVersion: number }): Promise<TokenState> {
      return heartbeating(tokenLease, async () => {
        const connection = await findConnection(db, input.connectionId);
        if (!connection) throw ApplicationFailure.nonRetryable('connection does not exist', FailureType.connectionGone);
        assertRefreshable(connection.status);
        if (connection.tokenVersion !== input.expectedVersion) return currentTokenState(db, input.connectionId);
        return TokenLease.hold(db, input.connectionId, input.expectedVersion, (lease) => refreshHolding(lease, connection), tokenLease);
      });
    },

    /** Moves the connection to needs_reauth; only the call that makes the move writes the audit row. */
    async markConnectionNeedsReauth(input: { connectionId: string; reason: string }): Promise<void> {
      await transitionAndAudit({ db, audit }, { ...input, to: 'needs_reauth', from: ['active', 'pending'], action: 'IntegrationNeedsReauth', outcome: 'success' });
    },
  };

  /** The refresh proper, by the lease's holder: what it read before taking the lease may be stale, so it reads again. */
  async function refreshHolding(lease: TokenLease, connection: ConnectionRow): Promise<TokenState> {
    const { connectionId, tokenVersion: expectedVersion } = lease;
    const secrets = await readConnectionSecrets(db, connectionId);
    assertRefreshable(secrets.status);
    // An earlier attempt stored its answer before this one took the lease.
    if (secrets.tokenVersion !== expectedVersion) return currentTokenState(db, connectionId);
    if (!secrets.refreshTokenEnc) throw ApplicationFailure.nonRetryable('connection holds no refresh token', FailureType.grantRevoked);

    const adapter = providerAdapter(providers, connection.provider);
    let current: string;
    let previous: string | undefined;
    try {
      current = crypto.decrypt(secrets.refreshTokenEnc, connectionColumn(connectionId, 'refresh_token_enc'));
      previous = secrets.previousRefreshTokenEnc
        ? crypto.decrypt(secrets.previousRefreshTokenEnc, connectionColumn(connectionId, 'previous_refresh_token_enc'))
        : undefined;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      await recordConnectionError(db, { connectionId, tokenVersion: expectedVersion, kind: 'credential_unreadable', message, at: clock() });
      throw ApplicationFailure.nonRetryable(message, FailureType.credentialUnreadable);
    }

    const presenting = async (refreshToken: string): Promise<ProviderTokens> => {
      await lease.beforeProviderCall();
      try {
        return await adapter.refresh(refreshToken, { signal: lease.signal });
      } catch (error) {
        lease.noteAnswer(error);
        throw error;
      }
    };

    // Expiry counts from before the request: the provider's clock started no earlier, so we err early.
    const requestedAt = clock();
    let tokens: ProviderTokens;
    let usedRefreshToken = current;
    try {
      tokens = await presenting(current);
    } catch (error) {
      // A rotated token that never worked may have been lost upstream; the one before it may still be good.
      if (!(isRefusedGrant(error) && previous)) return failed(error);
      try {
        tokens = await presenting(previous);
        usedRefreshToken = previous;
      } catch (fallbackError) {
        return failed(fallbackError);
      }
    }

    const accessTokenExpiresAt = accessTokenExpiry(tokens, requestedAt);
    // Keep the token we used until its successor has worked once; a non-rotating provider leaves nothing to keep.
    const rotated = tokens.refreshToken !== undefined && tokens.refreshToken !== usedRefreshToken;
    // The provider may have rotated: these tokens may be the only good ones, so a database fault is outlasted, not passed on.
    return storingDespiteDatabaseFaults(() => db.transaction(async (transaction) => {
      await lease.settleWith(transaction);
      const tokenVersion = await storeTokensIfVersion(
        transaction,
        connectionId,
        expectedVersion,
        {
          accessTokenEnc: crypto.encrypt(tokens.accessToken, connectionColumn(connectionId, 'access_token_enc')),
          refreshTokenEnc: crypto.encrypt(tokens.refreshToken ?? usedRefreshToken, connectionColumn(connectionId, 'refresh_token_enc')),
          previousRefreshTokenEnc: rotated ? crypto.encrypt(usedRefreshToken, connectionColumn(connectionId, 'previous_refresh_token_enc')) : null,
          accessTokenExpiresAt,
          scopes: tokens.scopes,
        },
        requestedAt,
        ['active'],
      );
      if (tokenVersion === null) {
        // Someone else wrote first: a re-consent (its tokens stand) or a disconnect (it wins).
        assertRefreshable((await readConnectionSecrets(transaction, connectionId)).status);
        return currentTokenState(transaction, connectionId);
      }
      await audit.record(
        {
          action: 'OAuthTokenRefresh',
          outcome: 'success',
          actor: { type: 'system' },
          userId: connection.userId,
          provider: connection.provider,
          connectionId,
          details: { tokenVersion, rotated, fellBackToPreviousGrant: usedRefreshToken !== current },
        },
        transaction,
      );
      return { tokenVersion, accessTokenExpiresAt: accessTokenExpiresAt.getTime() };
    }));

    /** Throws what the workflow must see, or answers the stored state when another attempt's answer superseded the failed call. */
    async function failed(error: unknown): Promise<TokenState> {
      lease.rethrowIfAborted(error);
      // Ours (a lease taken over, a cancellation), not the provider's: nothing to record against the connection.
      if (error instanceof ApplicationFailure || error instanceof CancelledFailure) throw error;
      if (isRefusedGrant(error)) {
        // An attempt that lost the lease may have stored its answer meanwhile: the refusal was of a token it rotated away.
        const latest = await findConnection(db, connectionId);
        if (latest && latest.tokenVersion !== expectedVersion) return currentTokenState(db, connectionId);
        // Every token we hold refused, after an attempt whose answer never came: the provider rotated and the answer was lost.
        if (adapter.rotatesRefreshTokens && lease.earlierCallUnanswered) {
          const message = "the provider refused every refresh token we hold after an earlier attempt's answer was lost in flight";
          await recordConnectionError(db, { connectionId, tokenVersion: expectedVersion, kind: REFRESH_TOKEN_LOST_IN_FLIGHT, message, at: clock() });
          throw ApplicationFailure.nonRetryable(message, FailureType.refreshTokenLostInFlight);
        }
      }
      const kind = error instanceof ProviderError ? error.kind : 'unknown';
      const message = error instanceof Error ? error.message : String(error);
      await recordConnectionError(db, { connectionId, tokenVersion: expectedVersion, kind, message, at: clock() });
      throw providerActivityFailure(error);
    }
  }

  /**
   * Runs the store again after a transient database fault (the transaction rolled back, or committed
   * unseen: then the compare-and-set answers the stored state), while the attempt lives: until Temporal
   * cancels it (heartbeats carry the cancellation) or its start-to-close timeout is near.
   */
  async function storingDespiteDatabaseFaults<T>(store: () => Promise<T>): Promise<T> {
    const context = Context.current();
    const { currentAttemptScheduledTimestampMs, startToCloseTimeoutMs } = context.info;
    const deadline = currentAttemptScheduledTimestampMs + startToCloseTimeoutMs;
    for (let pause = FIRST_STORE_RETRY_PAUSE_MS; ; pause = Math.min(pause * 2, tokenLease.heartbeatIntervalMs)) {
      try {
        return await store();
      } catch (error) {
        if (!isTransientDatabaseFault(error) || Date.now() + pause >= deadline) throw error;
        await context.sleep(pause);
      }
    }
  }
}

function isRefusedGrant(error: unknown): boolean {
  return error instanceof ProviderError && error.kind === 'invalid_grant';
}
