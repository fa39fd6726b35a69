import type { FastifyInstance } from 'fastify';
import { WorkflowNotFoundError } from '@temporalio/client';
import { latestSyncRuns } from '../../db/queries/sync';
import { findLatestConnection, type ConnectionRow } from '../../db/queries/connections';
import type { ProviderAdapter, ProviderId } from '../../platform/providers/provider';
import type { connectionWorkflow } from '../../workflows/connection';
import { disconnectSignal, statusQuery, type ConnectionState, type DisconnectSignal } from '../../workflows/connection-messages';
import { errorResponseSchema, HttpError } from '../errors';
import { connectionStatusSchema, type ConnectionStatusResponse } from './connection-status-schema';
import { connectionWorkflowInput } from './connection-workflow';

// The status endpoint answers from the database alone rather than wait long for a busy worker.
const STATUS_QUERY_DEADLINE_MS = 3000;
const LIVE_STATUSES = new Set(['pending', 'active', 'needs_reauth', 'disconnecting']);

/**
 * The endpoints every provider's connection has, however it was connected (OAuth or machine-account
 * credentials): report its status, and ask its workflow to disconnect. Registered once per provider
 * under `/api/v1/integrations/<provider>`.
 */
export default async function connectionStatusRoutes(app: FastifyInstance, options: { provider: ProviderId }) {
  const { provider } = options;
  const { db, config, temporal, providers } = app.services;

  app.addHook('preHandler', app.authenticate);

  app.get('/status', { schema: { response: { 200: connectionStatusSchema, 401: errorResponseSchema } } }, async (request): Promise<ConnectionStatusResponse> => {
    const upstreamRevocation = describeUpstreamRevocation(providers[provider]);
    const connection = await findLatestConnection(db, request.user!.id, provider);
    if (!connection) return { provider, configured: Boolean(providers[provider]), connected: false, upstreamRevocation, connection: null };
    const workflow = LIVE_STATUSES.has(connection.status) ? await workflowState(connection) : null;
    // At most one run is unfinished; the one before it is the last outcome, which a run in progress must not hide.
    const recentSyncs = await latestSyncRuns(db, connection.id, 2);
    const runningSync = recentSyncs.find((run) => run.finishedAt === null);
    const lastSync = recentSyncs.find((run) => run.finishedAt !== null);
    return {
      provider,
      configured: Boolean(providers[provider]),
      upstreamRevocation,
      // Active with an expired token means refreshing is failing: not something to rely on.
      connected: connection.status === 'active' && (connection.accessTokenExpiresAt ?? 0) > Date.now(),
      connection: {
        id: connection.id,
        status: connection.status,
        scopes: connection.scopes,
        accessTokenExpiresAt: isoOrNull(connection.accessTokenExpiresAt),
        lastRefreshedAt: isoOrNull(connection.lastRefreshedAt),
        nextRefreshAt: isoOrNull(workflow?.refreshDueAt ?? null),
        lastError: connection.lastErrorKind
          ? { kind: connection.lastErrorKind, message: connection.lastErrorMessage ?? '', at: isoOrNull(connection.lastErrorAt) }
          : null,
        revocation: connection.revocationOutcome,
        createdAt: new Date(connection.createdAt).toISOString(),
        disconnectedAt: isoOrNull(connection.disconnectedAt),
        sync: {
          lastRunAt: isoOrNull(lastSync?.finishedAt ?? null),
          lastOutcome: lastSync?.outcome ?? null,
          lastCounts: lastSync?.outcome === 'succeeded'
            ? { created: lastSync.createdCount, updated: lastSync.updatedCount, deleted: lastSync.deletedCount, fullResync: lastSync.fullResync }
            : null,
          lastError: lastSync?.outcome === 'failed' ? { kind: lastSync.errorKind ?? 'unknown', message: lastSync.errorMessage ?? '' } : null,
          runningSince: isoOrNull(runningSync?.startedAt ?? null),
          nextRunAt: isoOrNull(workflow?.nextSyncAt ?? null),
          runCount: workflow?.sync?.runCount ?? null,
        },
        workflow: { id: connection.workflowId, running: workflow !== null, status: workflow?.status ?? null, refreshCount: workflow?.refreshCount ?? null },
      },
    };
  });

  app.post(
    '/disconnect',
    {
      schema: {
        response: {
          202: { type: 'object', required: ['connectionId', 'status'], properties: { connectionId: { type: 'string' }, status: { type: 'string' } } },
          401: errorResponseSchema,
          404: errorResponseSchema,
        },
      },
    },
    async (request, reply) => {
      const user = request.user!;
      const connection = await findLatestConnection(db, user.id, provider);
      if (!connection || !LIVE_STATUSES.has(connection.status)) throw new HttpError(404, 'not_connected', `There is no ${provider} connection to disconnect`);
      // With start: a connection whose workflow is gone (never started, terminated) is still disconnected properly.
      await temporal.workflow.signalWithStart<typeof connectionWorkflow, [DisconnectSignal]>('connectionWorkflow', {
        workflowId: connection.workflowId,
        taskQueue: config.temporal.taskQueue,
        args: [connectionWorkflowInput(config, connection)],
        signal: disconnectSignal,
        signalArgs: [{ requestedBy: { type: 'user', id: user.id } }],
      });
      return reply.code(202).send({ connectionId: connection.id, status: 'disconnecting' });
    },
  );

  /** The workflow's own view (next refresh, refresh count); absent when it has ended or Temporal cannot answer. */
  async function workflowState(connection: ConnectionRow): Promise<ConnectionState | null> {
    try {
      return await temporal.withDeadline(Date.now() + STATUS_QUERY_DEADLINE_MS, () =>
        temporal.workflow.getHandle(connection.workflowId).query(statusQuery),
      );
    } catch (error) {
      if (!(error instanceof WorkflowNotFoundError)) app.log.warn({ workflowId: connection.workflowId, err: error }, 'connection workflow did not answer its status query');
      return null;
    }
  }
}

function describeUpstreamRevocation(adapter: ProviderAdapter | undefined): ConnectionStatusResponse['upstreamRevocation'] {
  if (!adapter || adapter.supportsRevocation) {
    return { supported: true, note: 'Disconnecting stops the webhooks, revokes the grant at the provider and deletes our copy of the credentials.' };
  }
  return {
    supported: false,
    note: 'The provider offers no way to revoke a single grant: disconnecting stops the webhooks and deletes our copy of the credentials; remove the app in your account at the provider to end the grant there.',
  };
}

function isoOrNull(epochMs: number | null): string | null {
  return epochMs === null ? null : new Date(epochMs).toISOString();
}
