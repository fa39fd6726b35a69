import type { FastifyInstance, FastifyRequest } from 'fastify';
import { encryptedField } from '../../../db/encrypted-columns';
import { connectionWorkflowId } from '../../../db/queries/connections';
import { findWebhookSubscription, type WebhookSubscriptionRow } from '../../../db/queries/webhook-subscriptions';
import { GOOGLE_CALENDAR_WEBHOOK_PATH } from '../../../platform/providers/google-calendar-channels';
import { secretsEqual } from '../../../platform/secrets';
import { providerEventSignal } from '../../../workflows/connection-messages';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { deliverToConnection } from './deliver';

const PROVIDER = 'google-calendar';

interface NotificationHeaders {
  'x-goog-channel-id': string;
  'x-goog-channel-token'?: string;
  'x-goog-resource-id'?: string;
  'x-goog-resource-state': 'sync' | 'exists' | 'not_exists';
  'x-goog-message-number': string;
}

const routeSchema = {
  headers: {
    type: 'object',
    required: ['x-goog-channel-id', 'x-goog-resource-state', 'x-goog-message-number'],
    properties: {
      'x-goog-channel-id': safeString(64, { minLength: 1 }),
      'x-goog-channel-token': safeString(256),
      'x-goog-resource-id': safeString(256),
      'x-goog-resource-state': { type: 'string', enum: ['sync', 'exists', 'not_exists'] },
      'x-goog-message-number': { type: 'string', pattern: '^[0-9]{1,20}$' },
    },
  },
  response: { 200: { type: 'null' }, 400: errorResponseSchema, 401: errorResponseSchema, 403: errorResponseSchema },
} as const;

/**
 * Google Calendar push notifications. A notification counts only when it names an active channel of
 * ours, echoes that channel's token and names the resource Google gave the channel; it then becomes one
 * `changed` signal to the owning workflow per message, and the sync does the rest. Google gets its 200 at once.
 */
export default async function googleCalendarWebhooks(app: FastifyInstance) {
  const { db, crypto, audit } = app.services;

  // Everything is in the headers; whatever body comes along (Google sends none) is not read.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 4096 }, (_request, _body, done) => done(null, undefined));

  app.post<{ Headers: NotificationHeaders }>(GOOGLE_CALENDAR_WEBHOOK_PATH, { schema: routeSchema }, async (request, reply) => {
    const headers = request.headers;
    const channel = await findWebhookSubscription(db, PROVIDER, headers['x-goog-channel-id']);
    if (!channel || channel.status !== 'active' || !channel.verificationEnc) return reject(request, channel, 403, 'unknown_channel');
    const expectedToken = crypto.decrypt(channel.verificationEnc, encryptedField('webhook_subscriptions', 'verification_enc', channel.id));
    const presentedToken = headers['x-goog-channel-token'];
    if (presentedToken === undefined || !secretsEqual(presentedToken, expectedToken)) return reject(request, channel, 401, 'token_mismatch');
    // The `sync` message may overtake the recording of the watch answer, and asks for nothing anyway.
    if (headers['x-goog-resource-state'] === 'sync' && channel.resourceId === null) return reply.code(200).send();
    if (headers['x-goog-resource-id'] !== channel.resourceId) return reject(request, channel, 403, 'resource_mismatch');
    if (headers['x-goog-resource-state'] === 'sync') return reply.code(200).send();

    await deliverToConnection(
      app,
      {
        provider: PROVIDER,
        // Google numbers the messages of a channel; a redelivery carries the same number.
        deliveryId: `${channel.externalId}:${headers['x-goog-message-number']}`,
        connectionId: channel.connectionId,
        workflowId: connectionWorkflowId(PROVIDER, channel.connectionId),
      },
      (workflow) => workflow.signal(providerEventSignal, { kind: 'changed', subscriptionId: channel.id }),
    );
    return reply.code(200).send();
  });

  async function reject(request: FastifyRequest<{ Headers: NotificationHeaders }>, channel: WebhookSubscriptionRow | null, status: 401 | 403, reason: string): Promise<never> {
    await audit.record({
      action: 'WebhookRejected',
      outcome: 'failure',
      actor: { type: 'system', id: 'google-calendar-push' },
      provider: PROVIDER,
      ...(channel ? { connectionId: channel.connectionId } : {}),
      origin: requestOrigin(request),
      details: { reason, channelId: request.headers['x-goog-channel-id'] },
    });
    throw new HttpError(status, status === 401 ? 'invalid_channel_token' : 'unknown_channel', 'The notification does not come from an active channel of ours');
  }
}
