import { ApplicationFailure } from '@temporalio/activity';
import {
  findConnection,
  readConnectionSecrets,
  recordConnectionError,
  storeTokensIfVersion,
  type ConnectionStatus,
} from '../db/queries/connections';
import { ProviderError } from '../platform/providers/provider-error';
import type { ProviderTokens } from '../platform/providers/oauth-tokens';
import { FailureType } from './failure-types';
import { connectionColumn } from '../db/encrypted-columns';
import { accessTokenExpiry, currentTokenState, providerActivityFailure, providerAdapter, transitionAndAudit, type ActivityDependencies, type TokenState } from './dependencies';

/** Only an active connection is refreshed; a connection on its way out tells the workflow to finish it. */
function assertRefreshable(status: ConnectionStatus): void {
  if (status === 'active') return;
  if (status === 'pending' || status === 'needs_reauth') throw ApplicationFailure.nonRetryable(`connection is ${status}`, FailureType.grantRevoked);
  throw ApplicationFailure.nonRetryable(`connection is ${status}`, FailureType.connectionGone);
}

export function createRefreshActivities({ db, crypto, providers, audit, clock }: ActivityDependencies) {
  return {
    /**
     * The only code that refreshes a connection's tokens, run only by the connection's workflow
     * (design invariants 2 and 3). The new tokens are stored, compare-and-set on the version, before
     * the activity completes; a retry whose earlier attempt already stored them just reports them.
     */
    async refreshConnectionTokens(input: { connectionId: string; expectedVersion: number }): Promise<TokenState> {
      const secrets = await readConnectionSecrets(db, input.connectionId);
      assertRefreshable(secrets.status);
      if (secrets.tokenVersion !== input.expectedVersion) return currentTokenState(db, input.connectionId);
      if (!secrets.refreshTokenEnc) throw ApplicationFailure.nonRetryable('connection holds no refresh token', FailureType.grantRevoked);

      const connection = (await findConnection(db, input.connectionId))!;
      const adapter = providerAdapter(providers, connection.provider);
      let current: string;
      let previous: string | undefined;
      try {
        current = crypto.decrypt(secrets.refreshTokenEnc, connectionColumn(input.connectionId, 'refresh_token_enc'));
        previous = secrets.previousRefreshTokenEnc
          ? crypto.decrypt(secrets.previousRefreshTokenEnc, connectionColumn(input.connectionId, 'previous_refresh_token_enc'))
          : undefined;
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        await recordConnectionError(db, { connectionId: input.connectionId, tokenVersion: input.expectedVersion, kind: 'credential_unreadable', message, at: clock() });
        throw ApplicationFailure.nonRetryable(message, FailureType.credentialUnreadable);
      }

      // Expiry counts from before the request: the provider's clock started no earlier, so we err early.
      const requestedAt = clock();
      let tokens: ProviderTokens;
      let usedRefreshToken = current;
      try {
        tokens = await adapter.refresh(current);
      } catch (error) {
        // A rotated token that never worked may have been lost upstream; the one before it may still be good.
        if (!(error instanceof ProviderError && error.kind === 'invalid_grant' && previous)) throw await failed(error);
        try {
          tokens = await adapter.refresh(previous);
          usedRefreshToken = previous;
        } catch (fallbackError) {
          throw await failed(fallbackError);
        }
      }

      const accessTokenExpiresAt = accessTokenExpiry(tokens, requestedAt);
      // Keep the token we used until its successor has worked once; a non-rotating provider leaves nothing to keep.
      const rotated = tokens.refreshToken !== undefined && tokens.refreshToken !== usedRefreshToken;
      return db.transaction(async (transaction) => {
        const tokenVersion = await storeTokensIfVersion(
          transaction,
          input.connectionId,
          input.expectedVersion,
          {
            accessTokenEnc: crypto.encrypt(tokens.accessToken, connectionColumn(input.connectionId, 'access_token_enc')),
            refreshTokenEnc: crypto.encrypt(tokens.refreshToken ?? usedRefreshToken, connectionColumn(input.connectionId, 'refresh_token_enc')),
            previousRefreshTokenEnc: rotated
              ? crypto.encrypt(usedRefreshToken, connectionColumn(input.connectionId, 'previous_refresh_token_enc'))
              : null,
            accessTokenExpiresAt,
            scopes: tokens.scopes,
          },
          requestedAt,
          ['active'],
        );
        if (tokenVersion === null) {
          // Someone else wrote first: a re-consent (its tokens stand) or a disconnect (it wins).
          assertRefreshable((await readConnectionSecrets(transaction, input.connectionId)).status);
          return currentTokenState(transaction, input.connectionId);
        }
        await audit.record(
          {
            action: 'OAuthTokenRefresh',
            outcome: 'success',
            actor: { type: 'system' },
            userId: connection.userId,
            provider: connection.provider,
            connectionId: input.connectionId,
            details: { tokenVersion, rotated, fellBackToPreviousGrant: usedRefreshToken !== current },
          },
          transaction,
        );
        return { tokenVersion, accessTokenExpiresAt: accessTokenExpiresAt.getTime() };
      });

      async function failed(error: unknown): Promise<ApplicationFailure> {
        const kind = error instanceof ProviderError ? error.kind : 'unknown';
        const message = error instanceof Error ? error.message : String(error);
        await recordConnectionError(db, { connectionId: input.connectionId, tokenVersion: input.expectedVersion, kind, message, at: clock() });
        return providerActivityFailure(error);
      }
    },

    /** Moves the connection to needs_reauth; only the call that makes the move writes the audit row. */
    async markConnectionNeedsReauth(input: { connectionId: string; reason: string }): Promise<void> {
      await transitionAndAudit({ db, audit }, { ...input, to: 'needs_reauth', from: ['active', 'pending'], action: 'IntegrationNeedsReauth', outcome: 'success' });
    },
  };
}
