import { randomUUID } from 'node:crypto';
import { ApplicationFailure, log } from '@temporalio/activity';
import type { CommonQueryMethods } from 'slonik';
import { connectionColumn, unkeptTokenColumn } from '../db/encrypted-columns';
import { findConnection, lockConnectionGrantAtVersion, type ConnectionRow, type ConnectionStatus } from '../db/queries/connections';
import {
  claimUnkeptToken,
  countUnkeptTokens,
  insertUnkeptToken,
  recordUnkeptTokenAttempt,
  removeUnkeptToken,
  type UnkeptTokenReason,
  type UnkeptTokenRow,
} from '../db/queries/unkept-tokens';
import type { AuditEntry } from '../platform/audit';
import type { CredentialAdapter } from '../platform/providers/provider';
import { ProviderError } from '../platform/providers/provider-error';
import { providerAdapter, type ActivityDependencies } from './dependencies';
import { FailureType } from './failure-types';
import { grantKeepers } from './shared-grant';
import { heartbeating } from './token-lease';

type UnkeptTokenDependencies = Pick<ActivityDependencies, 'db' | 'crypto' | 'providers' | 'audit' | 'clock'>;

/**
 * Tokens one attempt of the revokeUnkeptTokens activity settles at most: each revocation may take the
 * provider's whole request timeout (15 s), and the attempt must end within its start-to-close timeout
 * (workflows/connection-activities.ts) having recorded what it tried. The rest wait for the next attempt.
 */
const TOKENS_PER_ATTEMPT = 3;
/** The exchange tries what it has just set aside, not a backlog: its own provider call shares the attempt's time. */
const TOKENS_PER_EXCHANGE = 1;
/**
 * How long a revoker keeps a token to itself: longer than one revocation, so two revokers never present
 * and audit one token together; a revoker that died gives its claim up by lapse.
 */
const CLAIM_SECONDS = 60;

type ObtainedTokens = { connectionId: string; provider: string; providerAccountId: string | undefined; refreshToken: string; reason: UnkeptTokenReason };

/**
 * Tokens an exchange obtained and will not keep (a scope the user refused, a connection disconnected
 * meanwhile): set aside durably, then revoked at once where the provider answers. An outage leaves them
 * for the revokeUnkeptTokens activity; a failure here never fails the exchange. Tokens that cannot be
 * set aside are still in hand: they are revoked at once, once, and the outcome audited.
 */
export async function dropObtainedTokens(dependencies: UnkeptTokenDependencies, obtained: ObtainedTokens): Promise<void> {
  if (!providerAdapter(dependencies.providers, obtained.provider).supportsRevocation) return;
  try {
    await setAside(dependencies, dependencies.db, { ...obtained, providerAccountId: obtained.providerAccountId ?? null });
  } catch (error) {
    log.warn('tokens that will not be kept could not be set aside; revoking them at once', { connectionId: obtained.connectionId, error: describe(error) });
    await revokeWithoutSettingAside(dependencies, obtained, describe(error));
    return;
  }
  await revokeUnkeptTokensNow(dependencies, obtained.connectionId);
}

/** The last chance for tokens nothing durable remembers: a failure is audited (or, without a database, logged), never retried. */
async function revokeWithoutSettingAside(dependencies: UnkeptTokenDependencies, obtained: ObtainedTokens, setAsideError: string): Promise<void> {
  const { db, audit } = dependencies;
  const adapter = providerAdapter(dependencies.providers, obtained.provider);
  let connection: ConnectionRow | null = null;
  let outcome: 'success' | 'failure';
  let details: NonNullable<AuditEntry['details']>;
  try {
    connection = await findConnection(db, obtained.connectionId);
    const keepers = await keepersOf(db, adapter, connection, { connectionId: obtained.connectionId, providerAccountId: obtained.providerAccountId ?? null });
    if (keepers.length > 0) [outcome, details] = ['success', { revocation: 'skipped_shared_grant', sharedGrantWith: keepers }];
    else [outcome, details] = ['success', { revocation: await adapter.revoke(obtained.refreshToken) }];
  } catch (error) {
    [outcome, details] = ['failure', { error: describe(error) }];
  }
  try {
    await audit.record(auditEntry(connection, obtained, outcome, { reason: obtained.reason, ...details, setAsideError }));
  } catch (error) {
    log.error('the revocation of tokens that were not set aside could not be audited', {
      connectionId: obtained.connectionId,
      reason: obtained.reason,
      outcome,
      revocation: details.revocation ?? null,
      error: describe(error),
    });
  }
}

/**
 * A re-consent replaces the connection's grant. Called in the transaction that stores the new tokens,
 * before the compare-and-set on `expectedVersion`: the refresh token it will overwrite is set aside for
 * revocation, so it is set aside exactly when it is overwritten. Not where revoking it would end the
 * grant that replaces it: Google and Airbnb revoke the account's whole grant, and a re-consent by the
 * same account (or one we cannot tell apart) only adds tokens to that grant, whose revocation at
 * disconnect ends them all. Revoke what it set aside with revokeUnkeptTokensNow once committed.
 */
export async function setAsideSupersededGrant(
  dependencies: UnkeptTokenDependencies,
  transaction: CommonQueryMethods,
  replacement: { connectionId: string; provider: string; expectedVersion: number; fromStatuses: ConnectionStatus[]; providerAccountId: string | undefined },
): Promise<void> {
  const adapter = providerAdapter(dependencies.providers, replacement.provider);
  if (!adapter.supportsRevocation) return;
  const superseded = await lockConnectionGrantAtVersion(transaction, replacement.connectionId, replacement.expectedVersion, replacement.fromStatuses);
  if (!superseded?.refreshTokenEnc) return;
  const sameGrant =
    superseded.providerAccountId === null || replacement.providerAccountId === undefined || superseded.providerAccountId === replacement.providerAccountId;
  if (adapter.revocationEndsAccountGrant && sameGrant) return;
  let refreshToken: string;
  try {
    refreshToken = dependencies.crypto.decrypt(superseded.refreshTokenEnc, connectionColumn(replacement.connectionId, 'refresh_token_enc'));
  } catch (error) {
    // The new grant is good; only the old one's revocation is lost, and the audit says so.
    const connection = await findConnection(transaction, replacement.connectionId);
    await dependencies.audit.record(
      auditEntry(connection, replacement, 'failure', { reason: 'superseded_by_reconsent', error: describe(error) }),
      transaction,
    );
    return;
  }
  await setAside(dependencies, transaction, {
    connectionId: replacement.connectionId,
    provider: replacement.provider,
    providerAccountId: superseded.providerAccountId,
    refreshToken,
    reason: 'superseded_by_reconsent',
  });
}

/**
 * Best effort, for the end of an exchange: whatever is left waits for the revokeUnkeptTokens activity,
 * which the workflow runs after every exchange and which alone gives up on a token after the window.
 */
export async function revokeUnkeptTokensNow(dependencies: UnkeptTokenDependencies, connectionId: string): Promise<void> {
  try {
    await revokeUnkeptTokens(dependencies, connectionId, { windowMs: undefined, limit: TOKENS_PER_EXCHANGE });
  } catch (error) {
    log.warn('revoking tokens that will not be kept failed; they wait for the next attempt', { connectionId, error: describe(error) });
  }
}

export function createUnkeptTokenActivities(dependencies: UnkeptTokenDependencies & Pick<ActivityDependencies, 'tokenLease'>) {
  return {
    /**
     * Revokes the connection's set-aside tokens, a few per attempt, heartbeating while a provider is
     * slow. Retryable while any is left: for each token up to `revocationWindowSeconds`
     * (UPSTREAM_REVOCATION_WINDOW_SECONDS) after it was set aside, then audited as a failed revocation;
     * every final answer is audited once.
     */
    revokeUnkeptTokens(input: { connectionId: string; revocationWindowSeconds: number }): Promise<void> {
      return heartbeating(dependencies.tokenLease, async () => {
        const waiting = await revokeUnkeptTokens(dependencies, input.connectionId, { windowMs: input.revocationWindowSeconds * 1000, limit: TOKENS_PER_ATTEMPT });
        if (waiting > 0) {
          throw ApplicationFailure.retryable(`${waiting} token(s) that will not be kept still wait to be revoked`, FailureType.providerUnavailable);
        }
      });
    },
  };
}

/**
 * Tries up to `limit` set-aside tokens once each, every one claimed first so that no other revoker
 * tries it meanwhile; returns how many still wait (tried or not, or another revoker's to settle).
 * Without a window, a token that meets an outage keeps waiting.
 */
async function revokeUnkeptTokens(
  dependencies: UnkeptTokenDependencies,
  connectionId: string,
  { windowMs, limit }: { windowMs: number | undefined; limit: number },
): Promise<number> {
  const connection = await findConnection(dependencies.db, connectionId);
  const tried: string[] = [];
  while (tried.length < limit) {
    const unkept = await claimUnkeptToken(dependencies.db, connectionId, CLAIM_SECONDS, tried);
    if (!unkept) break;
    tried.push(unkept.id);
    await settle(dependencies, connection, unkept, windowMs);
  }
  return countUnkeptTokens(dependencies.db, connectionId);
}

/** Gives the token a final answer (revoked, skipped, refused for good, or out of its window), or records a try that met an outage. */
async function settle(
  dependencies: UnkeptTokenDependencies,
  connection: ConnectionRow | null,
  unkept: UnkeptTokenRow,
  windowMs: number | undefined,
): Promise<void> {
  const { db, crypto, audit, clock } = dependencies;
  const finish = (outcome: 'success' | 'failure', details: NonNullable<AuditEntry['details']>) =>
    db.transaction(async (transaction) => {
      if (await removeUnkeptToken(transaction, unkept.id)) {
        await audit.record(auditEntry(connection, unkept, outcome, { reason: unkept.reason, ...details }), transaction);
      }
    });

  const adapter = providerAdapter(dependencies.providers, unkept.provider);
  let token: string;
  try {
    token = crypto.decrypt(unkept.tokenEnc, unkeptTokenColumn(unkept.id));
  } catch (error) {
    return finish('failure', { error: describe(error) });
  }
  const keepers = await keepersOf(db, adapter, connection, unkept);
  if (keepers.length > 0) return finish('success', { revocation: 'skipped_shared_grant', sharedGrantWith: keepers });
  let revocation: Awaited<ReturnType<CredentialAdapter['revoke']>>;
  try {
    revocation = await adapter.revoke(token);
  } catch (error) {
    const transient = !(error instanceof ProviderError) || error.kind === 'transient';
    if (!transient) return finish('failure', { error: describe(error) });
    if (windowMs === undefined || clock().getTime() - unkept.createdAt < windowMs) {
      await recordUnkeptTokenAttempt(db, unkept.id, describe(error));
      return;
    }
    return finish('failure', { error: describe(error), attempts: unkept.attempts + 1 });
  }
  return finish('success', { revocation });
}

/**
 * Who keeps the grant this token belongs to. Without the account, only the connection's own kept grant
 * can be told to be at risk (a re-consent by an account the provider did not name).
 */
async function keepersOf(
  db: CommonQueryMethods,
  adapter: CredentialAdapter,
  connection: ConnectionRow | null,
  unkept: Pick<UnkeptTokenRow, 'connectionId' | 'providerAccountId'>,
): Promise<string[]> {
  if (unkept.providerAccountId !== null) return grantKeepers(db, adapter, unkept.providerAccountId);
  const keepsGrant = adapter.revocationEndsAccountGrant && (connection?.status === 'active' || connection?.status === 'needs_reauth');
  return keepsGrant ? [unkept.connectionId] : [];
}

async function setAside(
  { crypto, clock }: UnkeptTokenDependencies,
  db: CommonQueryMethods,
  unkept: { connectionId: string; provider: string; providerAccountId: string | null; refreshToken: string; reason: UnkeptTokenReason },
): Promise<void> {
  const id = randomUUID();
  await insertUnkeptToken(db, {
    id,
    connectionId: unkept.connectionId,
    provider: unkept.provider,
    providerAccountId: unkept.providerAccountId,
    tokenEnc: crypto.encrypt(unkept.refreshToken, unkeptTokenColumn(id)),
    reason: unkept.reason,
    createdAt: clock(),
  });
}

function auditEntry(
  connection: ConnectionRow | null,
  subject: { connectionId: string; provider: string },
  outcome: 'success' | 'failure',
  details: NonNullable<AuditEntry['details']>,
): AuditEntry {
  return {
    action: 'OAuthRevoke',
    outcome,
    actor: { type: 'system' },
    ...(connection ? { userId: connection.userId } : {}),
    provider: subject.provider,
    connectionId: subject.connectionId,
    details,
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
