import { randomUUID } from 'node:crypto';
import {
  activeWebhookSubscriptions,
  endWebhookSubscription,
  findWebhookSubscription,
  insertWebhookSubscription,
  type WebhookSubscriptionRow,
} from '../../db/queries/webhook-subscriptions';
import { AIRBNB_RESERVATION_EVENTS, type AirbnbApi, type AirbnbWebhookSubscription } from './airbnb-api';
import type { ConnectionContext } from './features';
import { ProviderError } from './provider-error';

const PROVIDER = 'airbnb';
const SUBSCRIPTION_KIND = 'reservation-webhook';
const SUBSCRIBED_RESOURCE = 'reservations';
export const AIRBNB_WEBHOOK_PATH = '/api/v1/webhooks/airbnb';

type StopOutcome = 'deleted' | 'already_gone' | 'unauthorized';

/**
 * The host's reservation webhook subscription. Airbnb subscriptions do not expire, so there is nothing
 * to renew: one is kept live while the connection lasts and deleted on disconnect. Events are signed
 * with the partner-wide secret (AIRBNB_WEBHOOK_SECRET), so a subscription holds no secret of its own.
 */
export class AirbnbWebhookSubscriptions {
  private readonly webhookUrl: string;

  constructor(webhookBaseUrl: string) {
    this.webhookUrl = `${webhookBaseUrl}${AIRBNB_WEBHOOK_PATH}`;
  }

  /**
   * Leaves exactly one recorded subscription that Airbnb also knows. Airbnb is asked first, so a retry
   * after a subscription was created but not recorded adopts it instead of opening a second one.
   */
  async ensureOne(api: AirbnbApi, context: ConnectionContext): Promise<void> {
    const recorded = await activeWebhookSubscriptions(context.db, context.connection.id);
    let live: AirbnbWebhookSubscription | undefined;
    for (const candidate of (await api.listWebhookSubscriptions()).filter((subscription) => subscription.url === this.webhookUrl)) {
      const row = await findWebhookSubscription(context.db, PROVIDER, candidate.id);
      const ours = row === null || (row.connectionId === context.connection.id && row.status === 'active');
      // Another live connection of the same host has its own subscription; leave it be.
      if (row !== null && row.status === 'active' && !ours) continue;
      if (live === undefined && ours) live = candidate;
      // A leftover of an earlier connection whose disconnect could not reach Airbnb, or a duplicate.
      else await api.deleteWebhookSubscription(candidate.id);
    }
    live ??= await api.createWebhookSubscription({ url: this.webhookUrl, events: AIRBNB_RESERVATION_EVENTS });
    if (!recorded.some((row) => row.externalId === live.id)) await this.record(context, live);
    for (const row of recorded) if (row.externalId !== live.id) await this.end(context, row, 'gone_upstream', 'already_gone');
  }

  /** On disconnect. A token Airbnb refuses cannot delete anything; the subscription is then only forgotten here. */
  async stopAll(api: AirbnbApi, context: ConnectionContext): Promise<void> {
    for (const row of await activeWebhookSubscriptions(context.db, context.connection.id)) {
      await this.end(context, row, 'disconnected', await this.deleteUpstream(api, row));
    }
  }

  private async deleteUpstream(api: AirbnbApi, row: WebhookSubscriptionRow): Promise<StopOutcome> {
    try {
      return (await api.deleteWebhookSubscription(row.externalId)) === 'deleted' ? 'deleted' : 'already_gone';
    } catch (error) {
      if (error instanceof ProviderError && error.details.status === 401) return 'unauthorized';
      throw error;
    }
  }

  private async record(context: ConnectionContext, subscription: AirbnbWebhookSubscription): Promise<void> {
    const { connection } = context;
    const id = randomUUID();
    await context.db.transaction(async (transaction) => {
      await insertWebhookSubscription(transaction, {
        id,
        connectionId: connection.id,
        provider: PROVIDER,
        kind: SUBSCRIPTION_KIND,
        externalId: subscription.id,
        resource: SUBSCRIBED_RESOURCE,
        resourceId: null,
        verificationEnc: null,
        expiresAt: null,
      });
      await context.audit.record(
        {
          action: 'WebhookSubscriptionCreate',
          outcome: 'success',
          actor: { type: 'system' },
          userId: connection.userId,
          provider: PROVIDER,
          connectionId: connection.id,
          details: { subscriptionId: id, externalId: subscription.id, resource: SUBSCRIBED_RESOURCE, events: subscription.events },
        },
        transaction,
      );
    });
  }

  private async end(context: ConnectionContext, row: WebhookSubscriptionRow, reason: 'disconnected' | 'gone_upstream', upstream: StopOutcome): Promise<void> {
    const ended = upstream === 'unauthorized' ? 'failed' : 'stopped';
    await context.db.transaction(async (transaction) => {
      await endWebhookSubscription(transaction, row.id, ended);
      await context.audit.record(
        {
          action: 'WebhookSubscriptionStop',
          outcome: ended === 'failed' ? 'failure' : 'success',
          actor: { type: 'system' },
          userId: context.connection.userId,
          provider: PROVIDER,
          connectionId: context.connection.id,
          details: { subscriptionId: row.id, externalId: row.externalId, reason, upstream },
        },
        transaction,
      );
    });
  }
}
