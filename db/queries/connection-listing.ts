import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { connectionStatus, type ConnectionStatus } from './connections';

/** What an operator's list of connections shows from the database: facts and errors, never a token. */
const listedConnection = z.object({
  id: z.string().uuid(),
  userId: z.string().uuid(),
  provider: z.string(),
  status: connectionStatus,
  workflowId: z.string(),
  tokenVersion: z.number().int(),
  accessTokenExpiresAt: z.number().nullable(),
  lastRefreshedAt: z.number().nullable(),
  lastErrorKind: z.string().nullable(),
  lastErrorMessage: z.string().nullable(),
  lastErrorAt: z.number().nullable(),
  createdAt: z.number(),
});
export type ListedConnection = z.infer<typeof listedConnection>;

export interface ConnectionFilters {
  provider?: string;
  status?: ConnectionStatus;
  userId?: string;
}

/**
 * Connections matching every given filter, plus those in `alsoIds` whatever they match (the workflows'
 * own view may name a connection whose row says otherwise for a moment), oldest first.
 */
export function listConnections(db: CommonQueryMethods, filters: ConnectionFilters, alsoIds: string[] = []): Promise<readonly ListedConnection[]> {
  const conditions = [
    filters.provider === undefined ? null : sql.fragment`provider = ${filters.provider}`,
    filters.status === undefined ? null : sql.fragment`status = ${filters.status}`,
    filters.userId === undefined ? null : sql.fragment`user_id = ${filters.userId}`,
  ].filter((condition) => condition !== null);
  const matching = conditions.length === 0 ? sql.fragment`TRUE` : sql.join(conditions, sql.fragment` AND `);
  return db.any(sql.type(listedConnection)`
    SELECT id, user_id AS "userId", provider, status, workflow_id AS "workflowId", token_version AS "tokenVersion",
           access_token_expires_at AS "accessTokenExpiresAt", last_refreshed_at AS "lastRefreshedAt",
           last_error_kind AS "lastErrorKind", last_error_message AS "lastErrorMessage", last_error_at AS "lastErrorAt",
           created_at AS "createdAt"
    FROM integration_connections
    WHERE (${matching}) OR id = ANY(${sql.array(alsoIds, 'uuid')})
    ORDER BY created_at, id`);
}
