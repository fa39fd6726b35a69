import { ApplicationFailure } from '@temporalio/activity';
import { findAuthorization, markAuthorizationExchanged, wipeAuthorizationSecrets } from '../db/queries/authorizations';
import { findConnection, storeTokensIfVersion, recordConnectionError } from '../db/queries/connections';
import { ProviderError } from '../platform/providers/provider-error';
import { FailureType } from './failure-types';
import { authorizationColumn, connectionColumn } from '../db/encrypted-columns';
import {
  accessTokenExpiry,
  currentTokenState,
  transitionAndAudit,
  oauthProviderAdapter,
  retryableProviderFailure,
  type ActivityDependencies,
  type TokenState,
} from './dependencies';
import { dropObtainedTokens, revokeUnkeptTokensNow, setAsideSupersededGrant } from './unkept-tokens';
import { TokenLease } from './token-lease';

export function createAuthorizationActivities({ db, crypto, providers, audit, clock }: ActivityDependencies) {
  const unkept = { db, crypto, providers, audit, clock };
  return {
    /**
     * Trades the stored authorization code for tokens and stores them encrypted. Idempotent: once the
     * authorization is marked exchanged, a retry answers from the database instead of spending the code twice.
     */
    async exchangeAuthorizationCode(input: { connectionId: string; authorizationId: string }): Promise<TokenState> {
      const authorization = await findAuthorization(db, input.authorizationId);
      if (!authorization || authorization.connectionId !== input.connectionId) {
        throw ApplicationFailure.nonRetryable('authorization does not belong to this connection', FailureType.authorizationRejected);
      }
      const connection = await findConnection(db, input.connectionId);
      if (!connection) throw ApplicationFailure.nonRetryable('connection does not exist', FailureType.connectionGone);
      const { tokenVersion: versionBefore } = connection;
      if (authorization.exchangedAt !== null) return currentTokenState(db, input.connectionId);
      if (!authorization.codeEnc || !authorization.codeVerifierEnc) {
        throw ApplicationFailure.nonRetryable('authorization holds no code to exchange', FailureType.authorizationRejected);
      }

      // One attempt at a time may spend the code; one that finds it spent by an earlier attempt answers from the database.
      return TokenLease.hold(db, input.connectionId, versionBefore, async (lease) => {
        const held = await findAuthorization(db, authorization.id);
        if (held?.exchangedAt) return currentTokenState(db, input.connectionId);
        if (!held?.codeEnc || !held.codeVerifierEnc) throw ApplicationFailure.nonRetryable('authorization holds no code to exchange', FailureType.authorizationRejected);
        const adapter = oauthProviderAdapter(providers, authorization.provider);
        const code = crypto.decrypt(held.codeEnc, authorizationColumn(authorization.id, 'code_enc'));
        const codeVerifier = crypto.decrypt(held.codeVerifierEnc, authorizationColumn(authorization.id, 'code_verifier_enc'));
        // Expiry counts from before the request: the provider's clock started no earlier, so we err early.
        const requestedAt = clock();
        let tokens;
        try {
          tokens = await adapter.exchangeCode({ code, codeVerifier, redirectUri: authorization.redirectUri }, { signal: lease.signal });
        } catch (error) {
          lease.rethrowIfAborted(error);
          if (error instanceof ProviderError && error.kind !== 'transient') throw await rejected(error.kind, error.message);
          throw retryableProviderFailure(error);
        }
        // What we must revoke if we do not keep it (issue 11, defect 3).
        const obtained = { connectionId: input.connectionId, provider: authorization.provider, providerAccountId: tokens.accountId, refreshToken: tokens.refreshToken };
        // With granular consent the user may untick a scope; a connection without it would fail later, and quietly.
        const missingScopes = adapter.scopes.filter((scope) => tokens.scopes && !tokens.scopes.includes(scope));
        if (missingScopes.length > 0) {
          await dropObtainedTokens(unkept, { ...obtained, reason: 'insufficient_scope' });
          throw await rejected('insufficient_scope', `the user did not grant ${missingScopes.join(' ')}`);
        }

        const accessTokenExpiresAt = accessTokenExpiry(tokens, requestedAt);
        const { refreshToken } = tokens;
        const stored = await db.transaction(async (transaction) => {
          await lease.settleWith(transaction);
          await setAsideSupersededGrant(unkept, transaction, {
            connectionId: input.connectionId,
            provider: authorization.provider,
            expectedVersion: connection.tokenVersion,
            fromStatuses: ['pending', 'active', 'needs_reauth'],
            providerAccountId: tokens.accountId,
          });
          const tokenVersion = await storeTokensIfVersion(
            transaction,
            input.connectionId,
            connection.tokenVersion,
            {
              accessTokenEnc: crypto.encrypt(tokens.accessToken, connectionColumn(input.connectionId, 'access_token_enc')),
              refreshTokenEnc: crypto.encrypt(refreshToken, connectionColumn(input.connectionId, 'refresh_token_enc')),
              previousRefreshTokenEnc: null,
              accessTokenExpiresAt,
              scopes: tokens.scopes ?? adapter.scopes,
              providerAccountId: tokens.accountId,
            },
            requestedAt,
            ['pending', 'active', 'needs_reauth'],
          );
          if (tokenVersion === null) return null;
          await markAuthorizationExchanged(transaction, authorization.id);
          await audit.record(
            {
              action: 'IntegrationConnect',
              outcome: 'success',
              actor: { type: 'user', id: authorization.userId },
              userId: authorization.userId,
              provider: authorization.provider,
              connectionId: input.connectionId,
              details: { scopes: tokens.scopes ?? adapter.scopes, reauthorization: connection.status !== 'pending' },
            },
            transaction,
          );
          return { tokenVersion, accessTokenExpiresAt: accessTokenExpiresAt.getTime() };
        });
        if (stored === null) {
          await dropObtainedTokens(unkept, { ...obtained, reason: 'disconnected_during_authorization' });
          throw ApplicationFailure.nonRetryable('connection was disconnected during authorization', FailureType.connectionGone);
        }
        await revokeUnkeptTokensNow(unkept, input.connectionId);
        return stored;
      });

      /** A code that could not be used is worth nothing: it and its verifier are wiped, the reason kept. */
      async function rejected(kind: string, message: string): Promise<ApplicationFailure> {
        await wipeAuthorizationSecrets(db, input.authorizationId);
        await recordConnectionError(db, { connectionId: input.connectionId, tokenVersion: versionBefore, kind, message, at: clock() });
        return ApplicationFailure.nonRetryable(message, FailureType.authorizationRejected);
      }
    },

    /** A first authorization that could not be completed leaves a failed connection; the user starts again. */
    async markConnectionFailed(input: { connectionId: string; reason: string }): Promise<void> {
      await transitionAndAudit({ db, audit }, { ...input, to: 'failed', from: ['pending'], action: 'IntegrationConnect', outcome: 'failure' });
    },
  };
}
