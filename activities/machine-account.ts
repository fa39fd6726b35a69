import { ApplicationFailure } from '@temporalio/activity';
import { findConnection, readConnectionSecrets, recordConnectionError, storeTokensIfVersion } from '../db/queries/connections';
import { connectionColumn } from '../db/encrypted-columns';
import { ProviderError } from '../platform/providers/provider-error';
import { FailureType } from './failure-types';
import { accessTokenExpiry, currentTokenState, providerAdapter, retryableProviderFailure, type ActivityDependencies, type TokenState } from './dependencies';

export function createMachineAccountActivities({ db, crypto, providers, audit, clock }: ActivityDependencies) {
  return {
    /**
     * A machine-account connection's first token (Booking.com): the API stored the credentials, already
     * checked against the provider; the workflow turns them into the first access token, as it turns an
     * authorization code into tokens for OAuth providers. Idempotent like the code exchange.
     */
    async activateMachineAccount(input: { connectionId: string }): Promise<TokenState> {
      const connection = await findConnection(db, input.connectionId);
      if (!connection) throw ApplicationFailure.nonRetryable('connection does not exist', FailureType.connectionGone);
      if (connection.status === 'active') return currentTokenState(db, input.connectionId);
      const secrets = await readConnectionSecrets(db, input.connectionId);
      if (!secrets.refreshTokenEnc) throw ApplicationFailure.nonRetryable('connection holds no credentials', FailureType.authorizationRejected);
      const credentials = crypto.decrypt(secrets.refreshTokenEnc, connectionColumn(input.connectionId, 'refresh_token_enc'));

      const requestedAt = clock();
      let tokens;
      try {
        tokens = await providerAdapter(providers, connection.provider).refresh(credentials);
      } catch (error) {
        if (!(error instanceof ProviderError) || error.kind === 'transient') throw retryableProviderFailure(error);
        await recordConnectionError(db, { connectionId: input.connectionId, tokenVersion: secrets.tokenVersion, kind: error.kind, message: error.message, at: clock() });
        throw ApplicationFailure.nonRetryable(error.message, FailureType.authorizationRejected);
      }
      const accessTokenExpiresAt = accessTokenExpiry(tokens, requestedAt);
      return db.transaction(async (transaction) => {
        const tokenVersion = await storeTokensIfVersion(
          transaction,
          input.connectionId,
          secrets.tokenVersion,
          {
            accessTokenEnc: crypto.encrypt(tokens.accessToken, connectionColumn(input.connectionId, 'access_token_enc')),
            refreshTokenEnc: secrets.refreshTokenEnc!,
            previousRefreshTokenEnc: null,
            accessTokenExpiresAt,
            scopes: tokens.scopes,
            providerAccountId: tokens.accountId,
          },
          requestedAt,
          ['pending', 'needs_reauth'],
        );
        if (tokenVersion === null) return currentTokenState(transaction, input.connectionId);
        await audit.record(
          {
            action: 'IntegrationConnect',
            outcome: 'success',
            actor: { type: 'user', id: connection.userId },
            userId: connection.userId,
            provider: connection.provider,
            connectionId: input.connectionId,
            details: { credentials: 'machine-account', reauthorization: connection.status !== 'pending' },
          },
          transaction,
        );
        return { tokenVersion, accessTokenExpiresAt: accessTokenExpiresAt.getTime() };
      });
    },
  };
}
