import { ApplicationFailure } from '@temporalio/activity';
import type { DatabaseTransactionConnection } from 'slonik';
import { databaseNowMs, findAuthorization, isAuthorizationFailureAudited, markAuthorizationExchanged, wipeAuthorizationSecrets, type AuthorizationRow } from '../db/queries/authorizations';
import {
  findConnection,
  isSecondLiveConnection,
  readConnectionSecrets,
  storeTokensIfVersion,
  recordConnectionError,
  type ConnectionRow,
  type ConnectionStatus,
} from '../db/queries/connections';
import type { ProviderTokens } from '../platform/providers/oauth-tokens';
import { ProviderError } from '../platform/providers/provider-error';
import { AUTHORIZATION_CODE_EXPIRED, AUTHORIZATION_LOST_IN_FLIGHT, FailureType } from './failure-types';
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
import { heartbeating, storingDespiteDatabaseFaults, TokenLease, type TokenWriteAttempt } from './token-lease';

/**
 * The statuses a code exchange stores tokens from. `failed` too: a failed first authorization is marked
 * failed while the user may already have authorized again, and that newer code revives the connection.
 */
const EXCHANGE_FROM_STATUSES: ConnectionStatus[] = ['pending', 'active', 'needs_reauth', 'failed'];
/**
 * An attempt that starts later than this before the provider stops accepting the code (a retry, or one
 * that waited in a backlog) refuses without presenting it: one provider call at its default timeout
 * (PROVIDER_REQUEST_TIMEOUT_MS, 15 s) and the store after it must fit, with room for clock drift between
 * the api-server that set the deadline and the database, whose clock the check reads.
 */
const MIN_CODE_EXCHANGE_WINDOW_MS = 30 * 1000;
const CODE_EXPIRED_MESSAGE = 'the authorization code expired before it could be exchanged; connect again';

export function createAuthorizationActivities({ db, crypto, providers, audit, clock, tokenLease }: ActivityDependencies) {
  const unkept = { db, crypto, providers, audit, clock };
  return {
    /**
     * Trades the stored authorization code for tokens and stores them encrypted. Idempotent: once the
     * authorization is marked exchanged, a retry answers from the database instead of spending the code twice.
     * Tokens it obtains and does not keep are revoked after the lease is given back, so a refresh
     * never waits for a revocation.
     */
    /** `codeExpiresAt` (absent from workflows that predate it): when the provider stops accepting the code. */
    exchangeAuthorizationCode(input: { connectionId: string; authorizationId: string; codeExpiresAt?: number }): Promise<TokenState> {
      return heartbeating(tokenLease, async (attempt) => {
        const authorization = await findAuthorization(db, input.authorizationId);
        if (!authorization || authorization.connectionId !== input.connectionId) {
          throw ApplicationFailure.nonRetryable('authorization does not belong to this connection', FailureType.authorizationRejected);
        }
        const connection = await findConnection(db, input.connectionId);
        if (!connection) throw ApplicationFailure.nonRetryable('connection does not exist', FailureType.connectionGone);
        if (authorization.exchangedAt !== null) return currentTokenState(db, input.connectionId);
        if (!authorization.codeEnc || !authorization.codeVerifierEnc) {
          throw ApplicationFailure.nonRetryable('authorization holds no code to exchange', FailureType.authorizationRejected);
        }
        if (input.codeExpiresAt !== undefined && (await databaseNowMs(db)) > input.codeExpiresAt - MIN_CODE_EXCHANGE_WINDOW_MS) {
          throw await rejected(input, connection.tokenVersion, AUTHORIZATION_CODE_EXPIRED, CODE_EXPIRED_MESSAGE, FailureType.authorizationCodeExpired);
        }

        // One attempt at a time may spend the code; one that finds it spent by an earlier attempt answers from the database.
        const write = { connectionId: input.connectionId, tokenVersion: connection.tokenVersion, call: `exchange:${authorization.id}` };
        const outcome = await TokenLease.hold(db, attempt, write, (lease) => exchangeHolding(attempt, lease, authorization));
        if ('tokens' in outcome) {
          await revokeUnkeptTokensNow(unkept, input.connectionId);
          return outcome.tokens;
        }
        await dropObtainedTokens(unkept, outcome.unkept);
        if ('storeError' in outcome) throw outcome.storeError;
        if (outcome.unkept.reason === 'insufficient_scope') throw await rejected(input, connection.tokenVersion, 'insufficient_scope', outcome.message);
        throw ApplicationFailure.nonRetryable(outcome.message, FailureType.connectionGone);
      });
    },

    /**
     * A first authorization that could not be completed leaves a failed connection; the user starts again.
     * A failed connection that the user's newer code was bringing back stays failed, and that failure is audited too.
     */
    async markConnectionFailed(input: { connectionId: string; reason: string; authorizationId?: string }): Promise<void> {
      const { connectionId, reason, authorizationId } = input;
      const details = { reauthorization: false, ...(authorizationId ? { authorizationId } : {}) };
      if (await transitionAndAudit({ db, audit }, { connectionId, reason, details, to: 'failed', from: ['pending'], action: 'IntegrationConnect', outcome: 'failure' })) return;
      if (authorizationId && (await findConnection(db, connectionId))?.status === 'failed') await auditAuthorizationFailure({ connectionId, reason, authorizationId, reauthorization: false });
    },

    /**
     * An authorization that failed without failing the connection: a re-consent (the grant it would have
     * replaced stays), or a first one that gives way to a newer code the user already sent.
     */
    async auditFailedAuthorization(input: { connectionId: string; reason: string; authorizationId?: string; reauthorization: boolean }): Promise<void> {
      await auditAuthorizationFailure(input);
    },
  };

  /** The exchange proper, by the lease's holder: it spends the code and stores what it obtained, or says what it will not keep. */
  async function exchangeHolding(attempt: TokenWriteAttempt, lease: TokenLease, authorization: AuthorizationRow): Promise<ExchangeOutcome> {
    const { connectionId } = lease;
    const held = await findAuthorization(db, authorization.id);
    if (held?.exchangedAt) return { tokens: await currentTokenState(db, connectionId) };
    if (!held?.codeEnc || !held.codeVerifierEnc) throw ApplicationFailure.nonRetryable('authorization holds no code to exchange', FailureType.authorizationRejected);
    const adapter = oauthProviderAdapter(providers, authorization.provider);
    const code = crypto.decrypt(held.codeEnc, authorizationColumn(authorization.id, 'code_enc'));
    const codeVerifier = crypto.decrypt(held.codeVerifierEnc, authorizationColumn(authorization.id, 'code_verifier_enc'));
    // Expiry counts from before the request: the provider's clock started no earlier, so we err early.
    const requestedAt = clock();
    let tokens: ProviderTokens & { refreshToken: string };
    await lease.beforeProviderCall();
    try {
      tokens = await adapter.exchangeCode({ code, codeVerifier, redirectUri: authorization.redirectUri }, { signal: lease.signal });
    } catch (error) {
      lease.noteAnswer(error);
      lease.rethrowIfAborted(error);
      if (!(error instanceof ProviderError) || error.kind === 'transient') throw retryableProviderFailure(error);
      // An earlier attempt that lost the lease may have stored what it obtained with this code meanwhile.
      if ((await findAuthorization(db, authorization.id))?.exchangedAt) return { tokens: await currentTokenState(db, connectionId) };
      // An earlier attempt that lost the lease may still be alive and about to store what this code gave it.
      if (error.kind === 'invalid_grant' && lease.earlierCallMayStillStore) throw lease.inProgress();
      if (error.kind === 'invalid_grant' && lease.earlierCallUnanswered) throw await lostInFlight(lease, authorization.id);
      throw await rejected({ connectionId, authorizationId: authorization.id }, lease.tokenVersion, error.kind, error.message);
    }
    // What we must revoke if we do not keep it (issue 11, defect 3).
    const obtained = { connectionId, provider: authorization.provider, providerAccountId: tokens.accountId, refreshToken: tokens.refreshToken };
    // With granular consent the user may untick a scope; a connection without it would fail later, and quietly.
    const missingScopes = adapter.scopes.filter((scope) => tokens.scopes && !tokens.scopes.includes(scope));
    if (missingScopes.length > 0) return { unkept: { ...obtained, reason: 'insufficient_scope' }, message: `the user did not grant ${missingScopes.join(' ')}` };

    const accessTokenExpiresAt = accessTokenExpiry(tokens, requestedAt);
    // These tokens exist nowhere else: a database fault is outlasted while the attempt lives, and what
    // cannot be stored in the end is revoked rather than dropped.
    try {
      return await storingDespiteDatabaseFaults(attempt, async (retry) => {
        // A try that committed unseen stored these very tokens; storing them again would set them aside as superseded.
        if (retry > 0 && (await storedAlready())) return { tokens: await currentTokenState(db, connectionId) };
        return storeObtained();
      });
    } catch (error) {
      // A cancellation too: the attempt ends, the tokens must not outlive it unowned.
      return { unkept: { ...obtained, reason: 'store_failed' }, storeError: error };
    }

    async function storedAlready(): Promise<boolean> {
      if (!(await findAuthorization(db, authorization.id))?.exchangedAt) return false;
      const { refreshTokenEnc } = await readConnectionSecrets(db, connectionId);
      return refreshTokenEnc !== null && crypto.decrypt(refreshTokenEnc, connectionColumn(connectionId, 'refresh_token_enc')) === tokens.refreshToken;
    }

    /**
     * A refresh attempt that lost the lease may store after we read the version: its tokens are what this
     * re-consent replaces, so the store runs again on the version it left. Only a status says "disconnected".
     */
    async function storeObtained(): Promise<ExchangeOutcome> {
      for (;;) {
        const connection = await findConnection(db, connectionId);
        if (!connection || !EXCHANGE_FROM_STATUSES.includes(connection.status)) {
          return { unkept: { ...obtained, reason: 'disconnected_during_authorization' }, message: 'connection was disconnected during authorization' };
        }
        const stored = await store(connection, async (transaction) => {
          await lease.settleWith(transaction);
          await setAsideSupersededGrant(unkept, transaction, {
            connectionId,
            provider: authorization.provider,
            expectedVersion: connection.tokenVersion,
            fromStatuses: EXCHANGE_FROM_STATUSES,
            providerAccountId: tokens.accountId,
          });
          return storeTokensIfVersion(
            transaction,
            connectionId,
            connection.tokenVersion,
            {
              accessTokenEnc: crypto.encrypt(tokens.accessToken, connectionColumn(connectionId, 'access_token_enc')),
              refreshTokenEnc: crypto.encrypt(tokens.refreshToken, connectionColumn(connectionId, 'refresh_token_enc')),
              previousRefreshTokenEnc: null,
              accessTokenExpiresAt,
              scopes: tokens.scopes ?? adapter.scopes,
              providerAccountId: tokens.accountId,
            },
            requestedAt,
            EXCHANGE_FROM_STATUSES,
          );
        });
        if (stored === 'second_live_connection') {
          return { unkept: { ...obtained, reason: 'disconnected_during_authorization' }, message: 'the user connected this provider again during authorization' };
        }
        if (stored !== null) return { tokens: { tokenVersion: stored, accessTokenExpiresAt: accessTokenExpiresAt.getTime() } };
      }
    }

    /** One try of the compare-and-set, with the authorization marked exchanged and the connect audited in its transaction. */
    function store(connection: ConnectionRow, write: (transaction: DatabaseTransactionConnection) => Promise<number | null>) {
      return db
        .transaction(async (transaction) => {
          const tokenVersion = await write(transaction);
          if (tokenVersion === null) return null;
          await markAuthorizationExchanged(transaction, authorization.id);
          await audit.record(
            {
              action: 'IntegrationConnect',
              outcome: 'success',
              actor: { type: 'user', id: authorization.userId },
              userId: authorization.userId,
              provider: authorization.provider,
              connectionId,
              details: { scopes: tokens.scopes ?? adapter.scopes, reauthorization: connection.status === 'active' || connection.status === 'needs_reauth' },
            },
            transaction,
          );
          return tokenVersion;
        })
        .catch((error: unknown) => {
          // Reviving a failed connection while the user has connected again meanwhile: these tokens are not kept.
          if (isSecondLiveConnection(error)) return 'second_live_connection' as const;
          throw error;
        });
    }
  }

  /**
   * The code was refused after an earlier attempt of this exchange presented it and never heard back:
   * the provider spent it then. Recorded with its own reason, and the lease forgets the lost call, which
   * concerned the code and not the connection's refresh token.
   */
  async function lostInFlight(lease: TokenLease, authorizationId: string): Promise<ApplicationFailure> {
    const message = "the provider refused the authorization code after an earlier attempt's answer was lost in flight";
    await db.transaction(async (transaction) => {
      await lease.settleWith(transaction);
      await wipeAuthorizationSecrets(transaction, authorizationId);
      await recordConnectionError(transaction, { connectionId: lease.connectionId, tokenVersion: lease.tokenVersion, kind: AUTHORIZATION_LOST_IN_FLIGHT, message, at: clock() });
    });
    return ApplicationFailure.nonRetryable(message, FailureType.authorizationLostInFlight);
  }

  /** One audit row per failed authorization, however often a retried activity gets here. */
  async function auditAuthorizationFailure(failure: { connectionId: string; reason: string; authorizationId?: string; reauthorization: boolean }): Promise<void> {
    const { connectionId, reason, authorizationId, reauthorization } = failure;
    if (authorizationId && (await isAuthorizationFailureAudited(db, connectionId, authorizationId))) return;
    const connection = await findConnection(db, connectionId);
    if (!connection) return;
    await audit.record({
      action: 'IntegrationConnect',
      outcome: 'failure',
      actor: { type: 'system' },
      userId: connection.userId,
      provider: connection.provider,
      connectionId,
      details: { reason, reauthorization, ...(authorizationId ? { authorizationId } : {}) },
    });
  }

  /** A code that could not be used is worth nothing: it and its verifier are wiped, the reason kept. */
  async function rejected(
    input: { connectionId: string; authorizationId: string },
    tokenVersion: number,
    kind: string,
    message: string,
    type: string = FailureType.authorizationRejected,
  ): Promise<ApplicationFailure> {
    await wipeAuthorizationSecrets(db, input.authorizationId);
    await recordConnectionError(db, { connectionId: input.connectionId, tokenVersion, kind, message, at: clock() });
    return ApplicationFailure.nonRetryable(message, type);
  }
}

type UnkeptTokens = Parameters<typeof dropObtainedTokens>[1];

/** What the lease's holder leaves to do once the lease is given back. */
type ExchangeOutcome =
  | { tokens: TokenState }
  | { unkept: UnkeptTokens & { reason: Exclude<UnkeptTokens['reason'], 'store_failed'> }; message: string }
  | { unkept: UnkeptTokens & { reason: 'store_failed' }; storeError: unknown };
