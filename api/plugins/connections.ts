import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { attachCodeToAuthorization, consumeAuthorization, findAuthorizationByStateHash, insertAuthorization, releaseAuthorization } from '../../db/queries/authorizations';
import { findOrCreateLiveConnection } from '../../db/queries/connections';
import { authorizationColumn } from '../../db/encrypted-columns';
import { createPkcePair } from '../../platform/pkce';
import { redirectUriFor, type OAuthProviderAdapter, type OAuthProviderId } from '../../platform/providers/provider';
import { hashBearerValue, randomToken } from '../../platform/secrets';
import { isTransientTemporalFault } from '../../platform/temporal';
import type { connectionWorkflow } from '../../workflows/connection';
import { authorizeSignal, type AuthorizeSignal } from '../../workflows/connection-messages';
import { errorResponseSchema, HttpError } from '../errors';
import { requestOrigin } from '../request-origin';
import { connectionWorkflowInput } from './connection-workflow';

/**
 * The OAuth half of one provider's endpoints: start the authorization, and receive the callback and
 * hand it to the connection's workflow (status and disconnect are in connection-status.ts, shared by
 * every provider). Registered once per OAuth provider under `/api/v1/integrations/<provider>`.
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

      const codeReceivedAt = Date.now();
      const connection = await db.transaction(async (transaction) => {
        if (!(await consumeAuthorization(transaction, authorization.id))) return null;
        const live = await findOrCreateLiveConnection(transaction, user.id, provider);
        if (live.status === 'disconnecting') return live;
        await attachCodeToAuthorization(transaction, authorization.id, crypto.encrypt(code, authorizationColumn(authorization.id, 'code_enc')), live.id);
        return live;
      });
      if (!connection) return reject(400, 'state_already_used', 'This authorization was already completed; start again');
      if (connection.status === 'disconnecting') return reject(409, 'disconnect_in_progress', 'The previous connection is still being disconnected; try again shortly');

      try {
        await temporal.workflow.signalWithStart<typeof connectionWorkflow, [AuthorizeSignal]>('connectionWorkflow', {
          workflowId: connection.workflowId,
          taskQueue: config.temporal.taskQueue,
          args: [connectionWorkflowInput(config, connection)],
          signal: authorizeSignal,
          signalArgs: [{ authorizationId: authorization.id, codeExpiresAt: codeReceivedAt + config.authorizationCodeLifetimeSeconds * 1000 }],
        });
      } catch (error) {
        // Temporal is briefly away (503): nothing owns the code yet, so the browser's retry must find it unspent.
        if (isTransientTemporalFault(error)) await releaseAuthorization(db, authorization.id);
        throw error;
      }
      return reply.code(202).send({ connectionId: connection.id, status: connection.status, workflowId: connection.workflowId });
    },
  );
}
