import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { encryptedField } from '../../../db/encrypted-columns';
import { connectionWorkflowId, findConnection } from '../../../db/queries/connections';
import { findWebhookSubscription, type WebhookSubscriptionRow } from '../../../db/queries/webhook-subscriptions';
import { MICROSOFT_GRAPH_LIFECYCLE_PATH, MICROSOFT_GRAPH_WEBHOOK_PATH } from '../../../platform/providers/microsoft-graph';
import { secretsEqual } from '../../../platform/secrets';
import { providerEventSignal, type ProviderEventSignal } from '../../../workflows/connection-messages';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { deliverToConnection } from './deliver';

const PROVIDER = 'microsoft-calendar';
/** Graph batches notifications; far more than it sends at once, few enough to check one by one. */
const MAX_BATCH = 1000;

interface GraphNotification {
  subscriptionId: string;
  clientState?: string;
  changeType?: string;
  resource?: string;
  lifecycleEvent?: string;
  [field: string]: unknown;
}

type Accepted = { item: GraphNotification; subscription: WebhookSubscriptionRow };
type Rejected = { item: GraphNotification; rejected: string; subscription?: WebhookSubscriptionRow };
type Verdict = Accepted | Rejected;

const notificationSchema = {
  type: 'object',
  required: ['subscriptionId'],
  properties: {
    subscriptionId: safeString(200, { minLength: 1 }),
    clientState: safeString(255),
    changeType: safeString(64),
    resource: safeString(2048),
    lifecycleEvent: safeString(64),
  },
} as const;

const routeSchema = {
  querystring: { type: 'object', properties: { validationToken: safeString(2048, { minLength: 1 }) } },
  // The validation handshake comes as an empty text/plain POST; notifications as JSON.
  body: {
    content: {
      'application/json': { schema: { type: 'object', required: ['value'], properties: { value: { type: 'array', maxItems: MAX_BATCH, items: notificationSchema } } } },
      'text/plain': { schema: { type: 'string', maxLength: 1024 } },
    },
  },
  response: {
    200: { content: { 'text/plain': { schema: { type: 'string' } } } },
    202: { type: 'null' },
    400: errorResponseSchema,
    403: errorResponseSchema,
    415: errorResponseSchema,
  },
} as const;

/**
 * Graph's lifecycle events and what the connection workflow is asked to do about each. A Map, because
 * the key comes from the request: an object would answer `constructor` or `__proto__` with its own members.
 */
const LIFECYCLE_SIGNALS: ReadonlyMap<string, ProviderEventSignal['kind']> = new Map<string, ProviderEventSignal['kind']>([
  ['reauthorizationRequired', 'reauthorization_required'],
  ['subscriptionRemoved', 'subscription_removed'],
  ['missed', 'missed'],
]);

/**
 * Microsoft Graph change and lifecycle notifications. Both URLs answer Graph's validation handshake;
 * a notification counts only when its subscription is one of ours, still active, and it carries the
 * subscription's clientState. Verified notifications become signals to the owning workflow, once
 * per delivery, and Graph gets its 202 at once.
 */
export default async function microsoftGraphWebhooks(app: FastifyInstance) {
  const { db, crypto, audit } = app.services;

  for (const [url, endpoint] of [[MICROSOFT_GRAPH_WEBHOOK_PATH, 'notifications'], [MICROSOFT_GRAPH_LIFECYCLE_PATH, 'lifecycle']] as const) {
    app.post<{ Querystring: { validationToken?: string }; Body: { value: GraphNotification[] } | string }>(url, { schema: routeSchema }, async (request, reply) => {
      // Graph proves the URL is ours before it creates a subscription: echo the token, do nothing else.
      if (request.query.validationToken !== undefined) {
        return reply.code(200).type('text/plain; charset=utf-8').header('x-content-type-options', 'nosniff').send(request.query.validationToken);
      }
      // Only JSON bodies were checked against the schema; any other type the server can parse was not.
      if (!/^application\/json\b/i.test(request.headers['content-type'] ?? '') || typeof request.body !== 'object') {
        throw new HttpError(415, 'unsupported_media_type', 'Notifications are JSON: {"value": [...]}');
      }
      return receive(endpoint, request, reply, request.body.value);
    });
  }

  async function receive(endpoint: string, request: FastifyRequest, reply: FastifyReply, items: GraphNotification[]) {
    const subscriptions = new Map<string, WebhookSubscriptionRow | null>();
    const verdicts: Verdict[] = [];
    for (const item of items) {
      if (!subscriptions.has(item.subscriptionId)) subscriptions.set(item.subscriptionId, await findWebhookSubscription(db, PROVIDER, item.subscriptionId));
      verdicts.push(verify(item, subscriptions.get(item.subscriptionId) ?? null));
    }
    const accepted = verdicts.filter((verdict): verdict is Accepted => !('rejected' in verdict));
    await auditRejections(endpoint, request, verdicts);
    if (accepted.length === 0) throw new HttpError(403, 'forbidden', 'No notification names an active subscription with its clientState');

    for (const { item, subscription } of accepted) {
      const signal = signalFor(item);
      if (!signal) continue;
      await deliverToConnection(
        app,
        { provider: PROVIDER, deliveryId: deliveryId(item), connectionId: subscription.connectionId, workflowId: connectionWorkflowId(PROVIDER, subscription.connectionId) },
        (workflow) => workflow.signal(providerEventSignal, signal),
      );
    }
    return reply.code(202).send();
  }

  function verify(item: GraphNotification, subscription: WebhookSubscriptionRow | null): Verdict {
    if (!subscription) return { item, rejected: 'unknown_subscription' };
    if (subscription.status !== 'active' || !subscription.verificationEnc) return { item, subscription, rejected: 'subscription_not_active' };
    const expected = crypto.decrypt(subscription.verificationEnc, encryptedField('webhook_subscriptions', 'verification_enc', subscription.id));
    if (item.clientState === undefined || !secretsEqual(item.clientState, expected)) return { item, subscription, rejected: 'client_state_mismatch' };
    return { item, subscription };
  }

  /** One row per connection concerned (and one for unknown subscriptions), so a forged batch cannot flood the log. */
  async function auditRejections(endpoint: string, request: FastifyRequest, verdicts: Verdict[]) {
    const byConnection = new Map<string | null, Rejected[]>();
    for (const verdict of verdicts) {
      if (!('rejected' in verdict)) continue;
      const key = verdict.subscription?.connectionId ?? null;
      byConnection.set(key, [...(byConnection.get(key) ?? []), verdict]);
    }
    for (const [connectionId, rejected] of byConnection) {
      const connection = connectionId ? await findConnection(db, connectionId) : null;
      await audit.record({
        action: 'WebhookRejected',
        outcome: 'failure',
        actor: { type: 'system', id: 'microsoft-graph' },
        provider: PROVIDER,
        ...(connection ? { connectionId: connection.id, userId: connection.userId } : {}),
        origin: requestOrigin(request),
        details: {
          endpoint,
          count: rejected.length,
          reasons: [...new Set(rejected.map((verdict) => verdict.rejected))],
          subscriptionIds: [...new Set(rejected.map((verdict) => verdict.item.subscriptionId))].slice(0, 10),
        },
      });
    }
  }
}

function signalFor(item: GraphNotification): ProviderEventSignal | undefined {
  if (item.lifecycleEvent === undefined) return { kind: 'changed' };
  const kind = LIFECYCLE_SIGNALS.get(item.lifecycleEvent);
  // Lifecycle events this connection has no use for are acknowledged and dropped.
  if (!kind) return undefined;
  return kind === 'missed' ? { kind } : { kind, subscriptionId: item.subscriptionId };
}

/**
 * Graph redelivers a batch unchanged when it missed our answer: the same item gives the same id (a
 * change notification names the event's etag, so a later change differs). A lifecycle event repeated
 * later, after its first was handled, looks the same as a redelivery; it counts again the next hour,
 * because reauthorizing twice costs nothing and dropping a request would stop the notifications.
 */
function deliveryId(item: GraphNotification): string {
  const { clientState: _clientState, ...described } = item;
  const hash = createHash('sha256').update(JSON.stringify(described)).digest('base64url');
  const hour = item.lifecycleEvent === undefined ? '' : `:${new Date().toISOString().slice(0, 13)}`;
  return `${item.subscriptionId}:${hash}${hour}`;
}
