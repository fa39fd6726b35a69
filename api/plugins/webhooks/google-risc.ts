import type { FastifyInstance } from 'fastify';
import type { CommonQueryMethods } from 'slonik';
import { WorkflowNotFoundError } from '@temporalio/client';
import { connectionColumn } from '../../../db/encrypted-columns';
import { authorizedAgainSince } from '../../../db/queries/authorizations';
import { liveProviderConnections, readConnectionSecrets, type ConnectionRow } from '../../../db/queries/connections';
import { recordFirstDelivery } from '../../../db/queries/webhook-deliveries';
import type { AuditEntry } from '../../../platform/audit';
import {
  createSecurityEventVerifier,
  SecurityEventRejected,
  subjectNamesRefreshToken,
  type SecurityEvent,
  type SecurityEventToken,
} from '../../../platform/providers/google-risc';
import { invalidatedSignal } from '../../../workflows/connection-messages';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';

const PROVIDER = 'google-calendar';
const DELIVERY_PROVIDER = 'google-risc';
const MAX_TOKEN_LENGTH = 16 * 1024;
export const GOOGLE_RISC_WEBHOOK_PATH = '/api/v1/webhooks/google-risc';

const routeSchema = {
  body: { type: 'string', minLength: 1, maxLength: MAX_TOKEN_LENGTH },
  response: { 202: { type: 'null' }, 400: errorResponseSchema, 401: errorResponseSchema, 503: errorResponseSchema },
} as const;

/**
 * Google Cross-Account Protection receiver (RFC 8935 push delivery). A verified security event that
 * means our grant is gone moves every live Google Calendar connection of that Google account to
 * needs_reauth at once, through an `invalidated` signal, instead of waiting for a refresh to fail.
 * Each token is applied once (by `jti`); the answer is a 202 as soon as the signals are sent.
 */
export default async function googleRiscReceiver(app: FastifyInstance) {
  const { db, crypto, audit, config } = app.services;
  const clientId = config.google.credentials?.clientId;
  const verify = clientId ? createSecurityEventVerifier(config.google.risc, clientId) : undefined;

  app.addContentTypeParser('application/secevent+jwt', { parseAs: 'string', bodyLimit: MAX_TOKEN_LENGTH }, (_request, body, done) => done(null, body));

  app.post<{ Body: string }>(GOOGLE_RISC_WEBHOOK_PATH, { schema: routeSchema, bodyLimit: MAX_TOKEN_LENGTH }, async (request, reply) => {
    if (!verify) throw new HttpError(503, 'provider_not_configured', 'Google has no client credentials on this server');
    let token: SecurityEventToken;
    try {
      token = await verify(request.body.trim());
    } catch (error) {
      if (!(error instanceof SecurityEventRejected)) throw error;
      await audit.record({
        action: 'WebhookRejected',
        outcome: 'failure',
        actor: { type: 'system', id: DELIVERY_PROVIDER },
        provider: PROVIDER,
        origin: requestOrigin(request),
        details: { reason: error.code, ...(error.check ? { check: error.check } : {}) },
      });
      throw new HttpError(error.code === 'invalid_request' ? 400 : 401, error.code, error.message);
    }
    const origin = requestOrigin(request);
    // The jti is recorded in the transaction that sends the signals: if one cannot be sent, Google's redelivery is not ignored.
    await db.transaction(async (transaction) => {
      if (!(await recordFirstDelivery(transaction, { provider: DELIVERY_PROVIDER, deliveryId: token.jti, connectionId: null }))) return;
      for (const event of token.events) {
        if (event.invalidates === undefined) continue;
        const connections = await connectionsNamedBy(transaction, event);
        const entry: AuditEntry = {
          action: 'IntegrationSecurityEvent',
          outcome: 'success',
          actor: { type: 'system', id: DELIVERY_PROVIDER },
          provider: PROVIDER,
          origin,
          details: { event: event.invalidates, jti: token.jti, reason: event.reason ?? null, connections: connections.length },
        };
        if (connections.length === 0) await audit.record(entry, transaction);
        for (const connection of connections) {
          // A replayed or late event must not undo the user's re-authorization.
          const stale = await authorizedAgainSince(transaction, connection.id, token.issuedAt);
          if (!stale) await invalidate(connection, event.invalidates);
          const details = stale ? { ...entry.details, ignored: 'authorized_after_event' } : entry.details;
          await audit.record({ ...entry, connectionId: connection.id, userId: connection.userId, details }, transaction);
        }
      }
    });
    return reply.code(202).send();
  });

  /** Google names the account (`sub`), or for token-revoked the refresh token itself. */
  async function connectionsNamedBy(within: CommonQueryMethods, event: SecurityEvent): Promise<readonly ConnectionRow[]> {
    const subject = event.subject;
    if (subject?.sub !== undefined) return liveProviderConnections(within, PROVIDER, subject.sub);
    if (subject?.subject_type !== 'oauth_token') return [];
    const named: ConnectionRow[] = [];
    for (const connection of await liveProviderConnections(within, PROVIDER)) {
      const { refreshTokenEnc } = await readConnectionSecrets(within, connection.id);
      if (refreshTokenEnc && subjectNamesRefreshToken(subject, crypto.decrypt(refreshTokenEnc, connectionColumn(connection.id, 'refresh_token_enc')))) named.push(connection);
    }
    return named;
  }

  async function invalidate(connection: ConnectionRow, reason: string): Promise<void> {
    try {
      await app.services.temporal.workflow.getHandle(connection.workflowId).signal(invalidatedSignal, { reason });
    } catch (error) {
      // A connection without a running workflow has no grant to guard.
      if (!(error instanceof WorkflowNotFoundError)) throw error;
    }
  }
}
