import { randomUUID } from 'node:crypto';
import { sql, UniqueIntegrityConstraintViolationError, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

export const connectionStatus = z.enum(['pending', 'active', 'needs_reauth', 'disconnecting', 'disconnected', 'failed']);
export type ConnectionStatus = z.infer<typeof connectionStatus>;

const connectionRow = z.object({
  id: z.string().uuid(),
  userId: z.string().uuid(),
  provider: z.string(),
  status: connectionStatus,
  workflowId: z.string(),
  scopes: z.array(z.string()),
  tokenVersion: z.number().int(),
  accessTokenExpiresAt: z.number().nullable(),
  lastRefreshedAt: z.number().nullable(),
  lastErrorKind: z.string().nullable(),
  lastErrorMessage: z.string().nullable(),
  lastErrorAt: z.number().nullable(),
  revocationOutcome: z.string().nullable(),
  providerAccountId: z.string().nullable(),
  createdAt: z.number(),
  disconnectedAt: z.number().nullable(),
});
export type ConnectionRow = z.infer<typeof connectionRow>;

const connectionSecrets = z.object({
  id: z.string().uuid(),
  status: connectionStatus,
  tokenVersion: z.number().int(),
  accessTokenEnc: z.string().nullable(),
  refreshTokenEnc: z.string().nullable(),
  previousRefreshTokenEnc: z.string().nullable(),
});
export type ConnectionSecrets = z.infer<typeof connectionSecrets>;

const CONNECTION_COLUMNS = sql.fragment`
  id, user_id AS "userId", provider, status, workflow_id AS "workflowId", scopes, token_version AS "tokenVersion",
  access_token_expires_at AS "accessTokenExpiresAt", last_refreshed_at AS "lastRefreshedAt",
  last_error_kind AS "lastErrorKind", last_error_message AS "lastErrorMessage", last_error_at AS "lastErrorAt",
  revocation_outcome AS "revocationOutcome", provider_account_id AS "providerAccountId", created_at AS "createdAt", disconnected_at AS "disconnectedAt"`;

export function connectionWorkflowId(provider: string, connectionId: string): string {
  return `connection:${provider}:${connectionId}`;
}

export function findConnection(db: CommonQueryMethods, connectionId: string): Promise<ConnectionRow | null> {
  return db.maybeOne(sql.type(connectionRow)`SELECT ${CONNECTION_COLUMNS} FROM integration_connections WHERE id = ${connectionId}`);
}

/** The user's connection to a provider that is not over yet, else the most recent one. */
export function findLatestConnection(db: CommonQueryMethods, userId: string, provider: string): Promise<ConnectionRow | null> {
  return db.maybeOne(sql.type(connectionRow)`
    SELECT ${CONNECTION_COLUMNS} FROM integration_connections
    WHERE user_id = ${userId} AND provider = ${provider}
    ORDER BY status NOT IN ('disconnected', 'failed') DESC, created_at DESC
    LIMIT 1`);
}

/** Reuses the live connection (a re-authorisation) or creates a pending one; race-safe on the live-connection index. */
export async function findOrCreateLiveConnection(db: CommonQueryMethods, userId: string, provider: string): Promise<ConnectionRow> {
  const id = randomUUID();
  const inserted = await db.maybeOne(sql.type(connectionRow)`
    INSERT INTO integration_connections (id, user_id, provider, workflow_id)
    VALUES (${id}, ${userId}, ${provider}, ${connectionWorkflowId(provider, id)})
    ON CONFLICT (user_id, provider) WHERE status NOT IN ('disconnected', 'failed') DO NOTHING
    RETURNING ${CONNECTION_COLUMNS}`);
  if (inserted) return inserted;
  return db.one(sql.type(connectionRow)`
    SELECT ${CONNECTION_COLUMNS} FROM integration_connections
    WHERE user_id = ${userId} AND provider = ${provider} AND status NOT IN ('disconnected', 'failed')`);
}

export function readConnectionSecrets(db: CommonQueryMethods, connectionId: string): Promise<ConnectionSecrets> {
  return db.one(sql.type(connectionSecrets)`
    SELECT id, status, token_version AS "tokenVersion", access_token_enc AS "accessTokenEnc",
           refresh_token_enc AS "refreshTokenEnc", previous_refresh_token_enc AS "previousRefreshTokenEnc"
    FROM integration_connections WHERE id = ${connectionId}`);
}

export interface StoredTokens {
  accessTokenEnc: string;
  refreshTokenEnc: string;
  previousRefreshTokenEnc: string | null;
  accessTokenExpiresAt: Date;
  scopes: string[] | undefined;
  /** Kept when absent: refreshes rarely say who the account is. */
  providerAccountId?: string | undefined;
}

/**
 * Compare-and-set on the token version (design invariant 3): a write based on a stale read, or one
 * that lands after a disconnect, changes nothing. Returns the new version, or null when the set lost.
 */
export function storeTokensIfVersion(
  db: CommonQueryMethods,
  connectionId: string,
  expectedVersion: number,
  tokens: StoredTokens,
  refreshedAt: Date,
  fromStatuses: ConnectionStatus[],
): Promise<number | null> {
  return db.maybeOneFirst(sql.type(z.object({ tokenVersion: z.number().int() }))`
    UPDATE integration_connections SET
      access_token_enc = ${tokens.accessTokenEnc},
      refresh_token_enc = ${tokens.refreshTokenEnc},
      previous_refresh_token_enc = ${tokens.previousRefreshTokenEnc},
      access_token_expires_at = ${sql.timestamp(tokens.accessTokenExpiresAt)},
      scopes = COALESCE(${tokens.scopes ? sql.array(tokens.scopes, 'text') : null}, scopes),
      provider_account_id = COALESCE(${tokens.providerAccountId ?? null}, provider_account_id),
      token_version = token_version + 1,
      status = 'active',
      last_refreshed_at = ${sql.timestamp(refreshedAt)},
      last_error_kind = NULL, last_error_message = NULL, last_error_at = NULL,
      updated_at = now()
    WHERE id = ${connectionId} AND token_version = ${expectedVersion}
      AND status = ANY(${sql.array(fromStatuses, 'connection_status')})
    RETURNING token_version AS "tokenVersion"`);
}

/**
 * The connection's long-lived secret and account as they stand at `expectedVersion`, locked until the
 * transaction ends, so a compare-and-set on that version in the same transaction is sure to replace
 * exactly these; null when the version or status has moved on (the compare-and-set will lose).
 */
export function lockConnectionGrantAtVersion(
  db: CommonQueryMethods,
  connectionId: string,
  expectedVersion: number,
  fromStatuses: ConnectionStatus[],
): Promise<{ refreshTokenEnc: string | null; providerAccountId: string | null } | null> {
  return db.maybeOne(sql.type(z.object({ refreshTokenEnc: z.string().nullable(), providerAccountId: z.string().nullable() }))`
    SELECT refresh_token_enc AS "refreshTokenEnc", provider_account_id AS "providerAccountId"
    FROM integration_connections
    WHERE id = ${connectionId} AND token_version = ${expectedVersion} AND status = ANY(${sql.array(fromStatuses, 'connection_status')})
    FOR UPDATE`);
}

/**
 * Records why the last attempt failed, unless the tokens moved on since the failing attempt read them
 * (a later success, a re-consent, a disconnect): a late failure must not paint over a good state.
 */
export async function recordConnectionError(
  db: CommonQueryMethods,
  failure: { connectionId: string; tokenVersion: number; kind: string; message: string; at: Date },
): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE integration_connections
    SET last_error_kind = ${failure.kind}, last_error_message = ${failure.message}, last_error_at = ${sql.timestamp(failure.at)}, updated_at = now()
    WHERE id = ${failure.connectionId} AND token_version = ${failure.tokenVersion} AND status <> 'disconnected'`);
}

/**
 * Returns true only for the call that made the transition, so its caller audits it exactly once. With
 * `atVersion`, only while the tokens are still that version: a move decided on older tokens changes nothing.
 */
export async function transitionConnectionStatus(
  db: CommonQueryMethods,
  connectionId: string,
  to: ConnectionStatus,
  from: ConnectionStatus[],
  atVersion?: number,
): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE integration_connections SET status = ${to}, updated_at = now()
    WHERE id = ${connectionId} AND status = ANY(${sql.array(from, 'connection_status')})
      ${atVersion === undefined ? sql.fragment`` : sql.fragment`AND token_version = ${atVersion}`}`);
  return result.rowCount === 1;
}

/** Disconnect's last step: no token survives, and the version moves so an in-flight refresh cannot write back. */
export async function wipeConnectionTokens(db: CommonQueryMethods, connectionId: string, revocationOutcome: string): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE integration_connections SET
      access_token_enc = NULL, refresh_token_enc = NULL, previous_refresh_token_enc = NULL,
      token_version = token_version + 1, status = 'disconnected', revocation_outcome = ${revocationOutcome},
      disconnected_at = now(), updated_at = now()
    WHERE id = ${connectionId} AND status <> 'disconnected'`);
  return result.rowCount === 1;
}

/**
 * New machine-account credentials (Booking.com) for a connection that is not on its way out; the
 * workflow turns them into tokens. The version moves, so a refresh in flight with the old
 * credentials cannot write them back over the new ones.
 */
export async function storeMachineAccountCredentials(db: CommonQueryMethods, connectionId: string, credentialsEnc: string): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE integration_connections SET
      refresh_token_enc = ${credentialsEnc}, previous_refresh_token_enc = NULL,
      token_version = token_version + 1, updated_at = now()
    WHERE id = ${connectionId} AND status IN ('pending', 'active', 'needs_reauth')`);
  return result.rowCount === 1;
}

/**
 * The write would make a second live connection of one user to one provider (integration_connections_live_idx):
 * a connection that had failed cannot come back while the user has connected again meanwhile.
 */
export function isSecondLiveConnection(error: unknown): boolean {
  return error instanceof UniqueIntegrityConstraintViolationError && error.constraint === 'integration_connections_live_idx';
}

/** A provider's connections that are not over yet; with an account id, only that provider account's (security events name accounts). */
export function liveProviderConnections(db: CommonQueryMethods, provider: string, providerAccountId?: string): Promise<readonly ConnectionRow[]> {
  return db.any(sql.type(connectionRow)`
    SELECT ${CONNECTION_COLUMNS} FROM integration_connections
    WHERE provider = ${provider} AND status IN ('pending', 'active', 'needs_reauth')
    ${providerAccountId === undefined ? sql.fragment`` : sql.fragment`AND provider_account_id = ${providerAccountId}`}
    ORDER BY created_at`);
}

export interface ConnectionFilters {
  provider?: string;
  status?: ConnectionStatus;
  userId?: string;
}

/**
 * Connections matching every given filter, plus those in `alsoIds` whatever they match (the workflows'
 * own view may name a connection whose row says otherwise for a moment), oldest first.
 */
export function listConnections(db: CommonQueryMethods, filters: ConnectionFilters, alsoIds: string[] = []): Promise<readonly ConnectionRow[]> {
  const conditions = [
    filters.provider === undefined ? null : sql.fragment`provider = ${filters.provider}`,
    filters.status === undefined ? null : sql.fragment`status = ${filters.status}`,
    filters.userId === undefined ? null : sql.fragment`user_id = ${filters.userId}`,
  ].filter((condition) => condition !== null);
  const matching = conditions.length === 0 ? sql.fragment`TRUE` : sql.join(conditions, sql.fragment` AND `);
  return db.any(sql.type(connectionRow)`
    SELECT ${CONNECTION_COLUMNS} FROM integration_connections
    WHERE (${matching}) OR id = ANY(${sql.array(alsoIds, 'uuid')})
    ORDER BY created_at, id`);
}
