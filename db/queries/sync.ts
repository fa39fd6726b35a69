import { sql, type CommonQueryMethods, type DatabasePool } from 'slonik';
import { z } from 'zod';

export interface SyncCounts {
  created: number;
  updated: number;
  deleted: number;
  /** The stored state was dropped and everything read again (a 410, a missed notification, a first sync). */
  fullResync: boolean;
}

// sync_runs.id is a bigint, which slonik returns as a BigInt; run counts stay far below 2^53.
const syncRunId = z.coerce.number().int();

const syncRunRow = z.object({
  id: syncRunId,
  reason: z.string(),
  startedAt: z.number(),
  finishedAt: z.number().nullable(),
  outcome: z.enum(['succeeded', 'failed']).nullable(),
  fullResync: z.boolean(),
  createdCount: z.number().int(),
  updatedCount: z.number().int(),
  deletedCount: z.number().int(),
  errorKind: z.string().nullable(),
  errorMessage: z.string().nullable(),
});
export type SyncRunRow = z.infer<typeof syncRunRow>;

export function readSyncCursor(db: CommonQueryMethods, connectionId: string, resource: string): Promise<string | null> {
  return db.maybeOneFirst(sql.type(z.object({ cursor: z.string() }))`
    SELECT cursor FROM sync_cursors WHERE connection_id = ${connectionId} AND resource = ${resource}`);
}

export async function storeSyncCursor(db: CommonQueryMethods, connectionId: string, resource: string, cursor: string): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO sync_cursors (connection_id, resource, cursor) VALUES (${connectionId}, ${resource}, ${cursor})
    ON CONFLICT (connection_id, resource) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()`);
}

/** Without a resource, every cursor of the connection goes (a disconnect). */
export async function dropSyncCursor(db: CommonQueryMethods, connectionId: string, resource?: string): Promise<void> {
  await db.query(sql.unsafe`
    DELETE FROM sync_cursors WHERE connection_id = ${connectionId}
    ${resource === undefined ? sql.fragment`` : sql.fragment`AND resource = ${resource}`}`);
}

/**
 * Starts a run unless another one of the connection is unfinished; answers null then. A run left
 * unfinished for longer than `staleAfterMs` (its worker died past every timeout) is closed as
 * abandoned first, so one crash does not block the connection's syncs for good.
 */
export function claimSyncRun(db: DatabasePool, connectionId: string, reason: string, startedAt: Date, staleAfterMs: number): Promise<number | null> {
  return db.transaction(async (transaction) => {
    await transaction.query(sql.unsafe`
      UPDATE sync_runs SET finished_at = ${sql.timestamp(startedAt)}, outcome = 'failed', error_kind = 'abandoned',
        error_message = 'the worker running it stopped reporting'
      WHERE connection_id = ${connectionId} AND finished_at IS NULL
        AND started_at < ${sql.timestamp(new Date(startedAt.getTime() - staleAfterMs))}`);
    return transaction.maybeOneFirst(sql.type(z.object({ id: z.coerce.number().int() }))`
      INSERT INTO sync_runs (connection_id, reason, started_at) VALUES (${connectionId}, ${reason}, ${sql.timestamp(startedAt)})
      ON CONFLICT (connection_id) WHERE finished_at IS NULL DO NOTHING
      RETURNING id`);
  });
}

export async function finishSyncRun(
  db: CommonQueryMethods,
  runId: number,
  result: { finishedAt: Date } & ({ outcome: 'succeeded'; counts: SyncCounts } | { outcome: 'failed'; errorKind: string; errorMessage: string }),
): Promise<void> {
  const counts = result.outcome === 'succeeded' ? result.counts : { created: 0, updated: 0, deleted: 0, fullResync: false };
  await db.query(sql.unsafe`
    UPDATE sync_runs SET
      finished_at = ${sql.timestamp(result.finishedAt)}, outcome = ${result.outcome}, full_resync = ${counts.fullResync},
      created_count = ${counts.created}, updated_count = ${counts.updated}, deleted_count = ${counts.deleted},
      error_kind = ${result.outcome === 'failed' ? result.errorKind : null},
      error_message = ${result.outcome === 'failed' ? result.errorMessage : null}
    WHERE id = ${runId}`);
}

export function latestSyncRuns(db: CommonQueryMethods, connectionId: string, limit: number): Promise<readonly SyncRunRow[]> {
  return db.any(sql.type(syncRunRow)`
    SELECT id, reason, started_at AS "startedAt", finished_at AS "finishedAt", outcome, full_resync AS "fullResync",
           created_count AS "createdCount", updated_count AS "updatedCount", deleted_count AS "deletedCount",
           error_kind AS "errorKind", error_message AS "errorMessage"
    FROM sync_runs WHERE connection_id = ${connectionId} ORDER BY started_at DESC, id DESC LIMIT ${limit}`);
}
