import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { WorkflowNotFoundError } from '@temporalio/client';
import { attachCodeToAuthorization, consumeAuthorization, findAuthorizationByStateHash, insertAuthorization } from '../../db/queries/authorizations';
import { latestSyncRuns } from '../../db/queries/sync';
import { findLatestConnection, findOrCreateLiveConnection, type ConnectionRow } from '../../db/queries/connections';
import { authorizationColumn } from '../../db/encrypted-columns';
import { createPkcePair } from '../../platform/pkce';
import { redirectUriFor, type OAuthProviderAdapter, type OAuthProviderId, type ProviderAdapter } from '../../platform/providers/provider';
import { hashBearerValue, randomToken } from '../../platform/secrets';
import type { connectionWorkflow } from '../../workflows/connection';
import {
  authorizeSignal,
  disconnectSignal,
  statusQuery,
  type AuthorizeSignal,
  type ConnectionState,
  type ConnectionWorkflowInput,
  type DisconnectSignal,
} from '../../workflows/connection-messages';
import { errorResponseSchema, HttpError } from '../errors';
import { requestOrigin } from '../request-origin';
import { connectionStatusSchema, type ConnectionStatusResponse } from './connection-status-schema';

// The status endpoint answers from the database alone rather than wait long for a busy worker.
const STATUS_QUERY_DEADLINE_MS = 3000;
const LIVE_STATUSES = new Set(['pending', 'active', 'needs_reauth', 'disconnecting']);

/**
 * The four endpoints of one OAuth provider: start the authorization, receive the callback and hand
 * it to the connection's workflow, report the connection's status, and ask the workflow to disconnect.
 * Registered once per provider under `/api/v1/integrations/<provider>`.
 */
export default async function connectionRoutes(app: FastifyInstance, options: { provider: OAuthProviderId }) {
  const { provider } = options;
  const { db, crypto, audit, config, temporal, providers } = app.services;
  const redirectUri = redirectUriFor(config.http.publicBaseUrl, provider);

  function adapter(): OAuthProviderAdapter {
    const configured = providers[provider];
    if (!configured || configured.kind !== 'oauth') throw new HttpError(503, 'provider_not_configured', `${provider} has no client credentials on this server`);
    return configured;
  }

  app.addHook('preHandler', app.authenticate);

  app.get(
    '/auth',
    {
      schema: {
        response: {
          200: { type: 'object', required: ['authorizationUrl', 'expiresAt'], properties: { authorizationUrl: { type: 'string' }, expiresAt: { type: 'string' } } },
          302: { type: 'null' },
          401: errorResponseSchema,
          503: errorResponseSchema,
        },
      },
    },
    async (request, reply) => {
      const user = request.user!;
      const providerAdapter = adapter();
      const state = randomToken();
      const pkce = createPkcePair();
      const authorizationId = randomUUID();
      const expiresAt = new Date(Date.now() + config.lifetimes.oauthStateSeconds * 1000);
      await insertAuthorization(db, {
        id: authorizationId,
        userId: user.id,
        provider,
        stateHash: hashBearerValue(state),
        codeVerifierEnc: crypto.encrypt(pkce.verifier, authorizationColumn(authorizationId, 'code_verifier_enc')),
        redirectUri,
        expiresAt,
      });
      await audit.record({ action: 'IntegrationConnectStarted', outcome: 'success', actor: { type: 'user', id: user.id }, userId: user.id, provider, origin: requestOrigin(request) });
      const authorizationUrl = providerAdapter.authorizationUrl({ state, codeChallenge: pkce.challenge, redirectUri });
      // Single-page apps ask for JSON and navigate themselves; a plain browser link is redirected.
      if (request.headers.accept?.includes('application/json')) return { authorizationUrl, expiresAt: expiresAt.toISOString() };
      return reply.redirect(authorizationUrl, 302);
    },
  );

  app.get<{ Querystring: { code?: string; state?: string; error?: string; error_description?: string; scope?: string } }>(
    '/callback',
    {
      schema: {
        querystring: {
          type: 'object',
          properties: {
            code: { type: 'string', minLength: 1, maxLength: 4096 },
            state: { type: 'string', minLength: 1, maxLength: 512 },
            error: { type: 'string', maxLength: 256 },
            error_description: { type: 'string', maxLength: 2048 },
            scope: { type: 'string', maxLength: 4096 },
          },
        },
        response: {
          202: {
            type: 'object',
            required: ['connectionId', 'status', 'workflowId'],
            properties: { connectionId: { type: 'string' }, status: { type: 'string' }, workflowId: { type: 'string' } },
          },
          '4xx': errorResponseSchema,
          503: errorResponseSchema,
        },
      },
    },
    async (request, reply) => {
      const user = request.user!;
      const { code, state, error } = request.query;
      const reject = async (status: number, errorCode: string, message: string): Promise<never> => {
        await audit.record({
          action: 'IntegrationCallbackRejected',
          outcome: 'failure',
          actor: { type: 'user', id: user.id },
          userId: user.id,
          provider,
          origin: requestOrigin(request),
          details: { reason: errorCode },
        });
        throw new HttpError(status, errorCode, message);
      };

      if (!state) return reject(400, 'missing_state', 'The callback carries no state parameter');
      const authorization = await findAuthorizationByStateHash(db, hashBearerValue(state));
      if (!authorization || authorization.provider !== provider) return reject(400, 'invalid_state', 'The state parameter is unknown');
      if (authorization.userId !== user.id) return reject(403, 'foreign_state', 'The state parameter belongs to another user');
      if (authorization.consumedAt !== null) return reject(400, 'state_already_used', 'This authorization was already completed; start again');
      if (authorization.expiresAt <= Date.now()) return reject(400, 'state_expired', 'This authorization took too long; start again');
      if (error) {
        await consumeAuthorization(db, authorization.id);
        return reject(400, 'authorization_denied', `${provider} did not grant access (${error})`);
      }
      if (!code) return reject(400, 'missing_code', 'The callback carries no authorization code');

      const connection = await db.transaction(async (transaction) => {
        if (!(await consumeAuthorization(transaction, authorization.id))) return null;
        const live = await findOrCreateLiveConnection(transaction, user.id, provider);
        if (live.status === 'disconnecting') return live;
        await attachCodeToAuthorization(transaction, authorization.id, crypto.encrypt(code, authorizationColumn(authorization.id, 'code_enc')), live.id);
        return live;
      });
      if (!connection) return reject(400, 'state_already_used', 'This authorization was already completed; start again');
      if (connection.status === 'disconnecting') return reject(409, 'disconnect_in_progress', 'The previous connection is still being disconnected; try again shortly');

      await temporal.workflow.signalWithStart<typeof connectionWorkflow, [AuthorizeSignal]>('connectionWorkflow', {
        workflowId: connection.workflowId,
        taskQueue: config.temporal.taskQueue,
        args: [workflowInput(connection)],
        signal: authorizeSignal,
        signalArgs: [{ authorizationId: authorization.id }],
      });
      return reply.code(202).send({ connectionId: connection.id, status: connection.status, workflowId: connection.workflowId });
    },
  );

  app.get('/status', { schema: { response: { 200: connectionStatusSchema, 401: errorResponseSchema } } }, async (request): Promise<ConnectionStatusResponse> => {
    const upstreamRevocation = describeUpstreamRevocation(providers[provider]);
    const connection = await findLatestConnection(db, request.user!.id, provider);
    if (!connection) return { provider, configured: Boolean(providers[provider]), connected: false, upstreamRevocation, connection: null };
    const workflow = LIVE_STATUSES.has(connection.status) ? await workflowState(connection) : null;
    const [lastSync] = await latestSyncRuns(db, connection.id, 1);
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
          lastRunAt: isoOrNull(lastSync?.finishedAt ?? lastSync?.startedAt ?? null),
          lastOutcome: lastSync?.outcome ?? null,
          lastCounts: lastSync?.outcome === 'succeeded'
            ? { created: lastSync.createdCount, updated: lastSync.updatedCount, deleted: lastSync.deletedCount, fullResync: lastSync.fullResync }
            : null,
          lastError: lastSync?.outcome === 'failed' ? { kind: lastSync.errorKind ?? 'unknown', message: lastSync.errorMessage ?? '' } : null,
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
        args: [workflowInput(connection)],
        signal: disconnectSignal,
        signalArgs: [{ requestedBy: { type: 'user', id: user.id } }],
      });
      return reply.code(202).send({ connectionId: connection.id, status: 'disconnecting' });
    },
  );

  function workflowInput(connection: ConnectionRow): ConnectionWorkflowInput {
    return {
      connectionId: connection.id,
      provider,
      userId: connection.userId,
      refreshPolicy: { marginSeconds: config.tokenRefresh.marginSeconds, jitterSeconds: config.tokenRefresh.jitterSeconds },
    };
  }

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
