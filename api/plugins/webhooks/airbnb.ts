import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { WorkflowHandle } from '@temporalio/client';
import { authorizedAgainSince } from '../../../db/queries/authorizations';
import { connectionWorkflowId, liveProviderConnections } from '../../../db/queries/connections';
import { liveConnectionsWithListing } from '../../../db/queries/listing-mappings';
import type { AirbnbSettings } from '../../../platform/config';
import { AIRBNB_WEBHOOK_PATH } from '../../../platform/providers/airbnb-subscriptions';
import { invalidatedSignal, providerEventSignal } from '../../../workflows/connection-messages';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { deliverToConnection, type DeliveryOutcome } from './deliver';

const PROVIDER = 'airbnb';
const MAX_BODY_BYTES = 64 * 1024;
/** The host revoked our access in their Airbnb account (the event name is unverified, like the scheme). */
const AUTHORIZATION_REVOKED = 'authorization.revoked';

// PostgreSQL refuses NUL in text; ids that reach a query exclude it.
const text = (maxLength: number) => z.string().min(1).max(maxLength).refine((value) => !value.includes('\u0000'), 'must not contain NUL');
const airbnbId = z.union([text(64), z.number().int().nonnegative()]).transform(String);

/** What the sync needs of an event: whose reservations changed. The reservation itself is read by the sync. */
const webhookEvent = z.object({
  event_id: text(200),
  event_type: text(100),
  user_id: airbnbId,
  listing_id: airbnbId.optional(),
});
type WebhookEvent = z.infer<typeof webhookEvent>;

type EventOutcome = DeliveryOutcome | 'ignored';
type RejectionReason = 'missing_signature' | 'signature_mismatch' | 'missing_timestamp' | 'stale_timestamp';

const routeSchema = {
  response: {
    200: { type: 'object', required: ['outcome'], properties: { outcome: { type: 'string', enum: ['delivered', 'duplicate', 'connection_gone', 'ignored'] } } },
    400: errorResponseSchema,
    401: errorResponseSchema,
    503: errorResponseSchema,
  },
} as const;

/**
 * Airbnb reservation webhooks. An event counts only when it carries a valid HMAC-SHA256, with the
 * partner's webhook secret, of its signing time and body (headers and encoding configurable: Airbnb's
 * scheme is unverified), signed no longer ago than the configured maximum age; a reservation event for a
 * host we know then becomes one `changed` signal to each of the host's connections, once per event, and
 * the sync reads what changed; a revoked authorization moves them to needs_reauth unless the host
 * authorized again after it was signed. Airbnb gets its answer at once.
 */
export default async function airbnbWebhooks(app: FastifyInstance) {
  const { audit, config } = app.services;
  const settings = config.airbnb.webhook;

  // The signature covers the bytes as sent, so the body is kept raw and parsed only once it is verified.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_BODY_BYTES }, (_request, body, done) => done(null, body));

  app.post<{ Body: Buffer | undefined }>(AIRBNB_WEBHOOK_PATH, { schema: routeSchema }, async (request, reply) => {
    // Without a secret nothing can be verified, and an unverified event is never taken.
    if (settings.secret === undefined) throw new HttpError(503, 'webhooks_not_configured', 'Airbnb webhooks are not configured on this server');
    const body = request.body ?? Buffer.alloc(0);
    const presented = request.headers[settings.signatureHeader];
    if (typeof presented !== 'string') return reject(request, 'missing_signature');
    const timestamp = request.headers[settings.timestampHeader];
    if (typeof timestamp !== 'string' || !/^\d{1,12}$/.test(timestamp)) return reject(request, 'missing_timestamp');
    if (!signatureMatches(timestamp, body, presented, settings.secret, settings.signatureEncoding)) return reject(request, 'signature_mismatch');
    // A delivery id is remembered for days, a signature forever: the signing time bounds how late a capture can be replayed.
    const signedAt = new Date(Number(timestamp) * 1000);
    if (Math.abs(Date.now() - signedAt.getTime()) > settings.maxAgeSeconds * 1000) return reject(request, 'stale_timestamp');

    const event = parseEvent(body);
    const outcome = event.event_type === AUTHORIZATION_REVOKED || event.event_type.startsWith('reservation.') ? await deliver(event, signedAt) : 'ignored';
    return reply.code(200).send({ outcome });
  });

  /** needs_reauth at once, rather than when the next refresh fails hours later. */
  async function signalFor(event: WebhookEvent, workflow: WorkflowHandle): Promise<void> {
    if (event.event_type === AUTHORIZATION_REVOKED) await workflow.signal(invalidatedSignal, { reason: 'authorization_revoked' });
    else await workflow.signal(providerEventSignal, { kind: 'changed' });
  }

  /** Every live connection of the host (by Airbnb user id, else by the listing the event names) is told. */
  async function deliver(event: WebhookEvent, signedAt: Date): Promise<EventOutcome> {
    const { db } = app.services;
    const byHost = await liveProviderConnections(db, PROVIDER, event.user_id);
    const connections = byHost.length > 0 || event.listing_id === undefined ? byHost : await liveConnectionsWithListing(db, PROVIDER, event.listing_id);
    // A host with no connection here (disconnected, or another environment's): acknowledged, nothing to do.
    if (connections.length === 0) return 'ignored';
    const outcomes: EventOutcome[] = [];
    for (const connection of connections) {
      // A revocation signed before the host's newer authorization cannot concern the grant that produced.
      if (event.event_type === AUTHORIZATION_REVOKED && (await authorizedAgainSince(db, connection.id, signedAt))) {
        await audit.record({
          action: 'IntegrationSecurityEvent',
          outcome: 'success',
          actor: { type: 'system', id: 'airbnb-webhook' },
          provider: PROVIDER,
          connectionId: connection.id,
          details: { event: AUTHORIZATION_REVOKED, ignored: 'authorized_after_event' },
        });
        outcomes.push('ignored');
        continue;
      }
      const outcome = await deliverToConnection(
        app,
        // The event id alone would let the first of two connections of one host swallow the event for the second.
        { provider: PROVIDER, deliveryId: `${event.event_id}:${connection.id}`, connectionId: connection.id, workflowId: connectionWorkflowId(PROVIDER, connection.id) },
        (workflow) => signalFor(event, workflow),
      );
      outcomes.push(outcome);
      if (outcome === 'delivered' && event.event_type === AUTHORIZATION_REVOKED) {
        await audit.record({
          action: 'IntegrationSecurityEvent',
          outcome: 'success',
          actor: { type: 'system', id: 'airbnb-webhook' },
          provider: PROVIDER,
          connectionId: connection.id,
          details: { event: AUTHORIZATION_REVOKED },
        });
      }
    }
    return outcomes.find((outcome) => outcome === 'delivered') ?? outcomes[0]!;
  }

  async function reject(request: FastifyRequest, reason: RejectionReason): Promise<never> {
    await audit.record({
      action: 'WebhookRejected',
      outcome: 'failure',
      actor: { type: 'system', id: 'airbnb-webhook' },
      provider: PROVIDER,
      origin: requestOrigin(request),
      details: { reason, signatureHeader: settings.signatureHeader, timestampHeader: settings.timestampHeader },
    });
    if (reason === 'stale_timestamp') throw new HttpError(401, 'invalid_signature', `The event was signed more than ${settings.maxAgeSeconds} seconds from now`);
    throw new HttpError(401, 'invalid_signature', 'The event does not carry a valid signature');
  }
}

/** Constant-time comparison of the decoded bytes; a signature of the wrong length never matches. */
function signatureMatches(timestamp: string, body: Buffer, presented: string, secret: string, encoding: AirbnbSettings['webhook']['signatureEncoding']): boolean {
  const expected = createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest();
  const given = Buffer.from(presented.trim(), encoding);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function parseEvent(body: Buffer): WebhookEvent {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'invalid_event', 'The event is not JSON');
  }
  const parsed = webhookEvent.safeParse(json);
  if (!parsed.success) throw new HttpError(400, 'invalid_event', `The event is malformed: ${parsed.error.issues.map((issue) => issue.path.join('.') || issue.message).join(', ')}`);
  return parsed.data;
}
