import { ApplicationFailure, CancelledFailure } from '@temporalio/activity';
import {
  findConnection,
  readConnectionSecrets,
  recordConnectionError,
  storeTokensIfVersion,
  type ConnectionRow,
  type ConnectionStatus,
} from '../db/queries/connections';
import { ProviderError } from '../platform/providers/provider-error';
import type { ProviderTokens } from '../platform/providers/oauth-tokens';
import { FailureType, REFRESH_TOKEN_LOST_IN_FLIGHT } from './failure-types';
import { connectionColumn } from '../db/encrypted-columns';
import { accessTokenExpiry, currentTokenState, providerActivityFailure, providerAdapter, transitionAndAudit, type ActivityDependencies, type TokenState } from './dependencies';
import { heartbeating, storingDespiteDatabaseFaults, TokenLease, type TokenWriteAttempt } from './token-lease';

/** The lease's name for a refresh's provider calls. */
const REFRESH_CALL = 'refresh';

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
      return heartbeating(tokenLease, async (attempt) => {
        const connection = await findConnection(db, input.connectionId);
        if (!connection) throw ApplicationFailure.nonRetryable('connection does not exist', FailureType.connectionGone);
        assertRefreshable(connection.status);
        if (connection.tokenVersion !== input.expectedVersion) return currentTokenState(db, input.connectionId);
        const write = { connectionId: input.connectionId, tokenVersion: input.expectedVersion, call: REFRESH_CALL };
        return TokenLease.hold(db, attempt, write, (lease) => refreshHolding(attempt, lease, connection));
      });
    },

    /**
     * Moves the connection to needs_reauth; only the call that makes the move writes the audit row. With
     * `expectedVersion`, only while the tokens are those the refusal was about: an attempt the workflow
     * had given up on may have stored good ones since, and then their state is answered instead.
     */
    async markConnectionNeedsReauth(input: { connectionId: string; reason: string; expectedVersion?: number }): Promise<TokenState | undefined> {
      const { connectionId, reason, expectedVersion } = input;
      await transitionAndAudit(
        { db, audit },
        { connectionId, reason, to: 'needs_reauth', from: ['active', 'pending'], atVersion: expectedVersion, action: 'IntegrationNeedsReauth', outcome: 'success' },
      );
      if (expectedVersion === undefined) return undefined;
      const connection = await findConnection(db, connectionId);
      if (connection?.status !== 'active' || connection.tokenVersion === expectedVersion || connection.accessTokenExpiresAt === null) return undefined;
      return { tokenVersion: connection.tokenVersion, accessTokenExpiresAt: connection.accessTokenExpiresAt };
    },
  };

  /** The refresh proper, by the lease's holder: what it read before taking the lease may be stale, so it reads again. */
  async function refreshHolding(attempt: TokenWriteAttempt, lease: TokenLease, connection: ConnectionRow): Promise<TokenState> {
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
    return storingDespiteDatabaseFaults(attempt, () => db.transaction(async (transaction) => {
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
        // An attempt that lost the lease may still be alive with an answer to store: it goes first.
        if (lease.earlierCallMayStillStore) throw lease.inProgress();
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
}

function isRefusedGrant(error: unknown): boolean {
  return error instanceof ProviderError && error.kind === 'invalid_grant';
}
