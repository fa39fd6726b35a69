import { randomUUID } from 'node:crypto';
import { encryptedField } from '../../db/encrypted-columns';
import {
  activeWebhookSubscriptions,
  endWebhookSubscription,
  insertWebhookSubscription,
  markWebhookSubscriptionRenewed,
  type WebhookSubscriptionRow,
} from '../../db/queries/webhook-subscriptions';
import type { SyncCounts } from '../../db/queries/sync';
import type { MicrosoftSettings } from '../config';
import { randomToken } from '../secrets';
import type { ConnectionContext, ProviderFeatures, RenewalReason, SubscriptionPlan, SyncRequest } from './features';
import { syncOutlookCalendar } from './microsoft-calendar-sync';
import { MAX_SUBSCRIPTION_MINUTES, MicrosoftGraphClient, SUBSCRIBED_RESOURCE } from './microsoft-graph';
import { ProviderError } from './provider-error';

const PROVIDER = 'microsoft-calendar';
const SUBSCRIPTION_KIND = 'graph-subscription';
/**
 * Renewal comes this long before expiry: a quarter of the lifetime, at most 12 hours, which leaves
 * room for a Graph outage (renewals are retried every few minutes) within the 7-day cap.
 */
const MAX_RENEWAL_MARGIN_MS = 12 * 3600 * 1000;
/** Graph checks the cap against its own clock, so a request stays a little under it. */
const CAP_MARGIN_MINUTES = 15;

/**
 * Outlook Calendar beyond its tokens: one Graph change-notification subscription per connection,
 * kept alive before the 7-day cap and after lifecycle events, and the calendarView delta sync.
 */
export class MicrosoftCalendarFeatures implements ProviderFeatures {
  readonly syncIntervalSeconds: number;
  private readonly graph: MicrosoftGraphClient;
  private readonly lifetimeMs: number;

  constructor(settings: MicrosoftSettings, webhookBaseUrl: string) {
    this.syncIntervalSeconds = settings.syncIntervalSeconds;
    this.graph = new MicrosoftGraphClient(settings.graphUrl, webhookBaseUrl);
    this.lifetimeMs = Math.min(settings.subscriptionMinutes, MAX_SUBSCRIPTION_MINUTES - CAP_MARGIN_MINUTES) * 60_000;
  }

  /** Keeps a live subscription after a re-consent; creates one when there is none. */
  setUp(context: ConnectionContext): Promise<SubscriptionPlan> {
    return this.ensureSubscription(context, 'connected');
  }

  async renewSubscriptions(context: ConnectionContext, reason: RenewalReason, subscriptionId?: string): Promise<SubscriptionPlan> {
    const subscriptions = await this.subscriptions(context);
    if (reason === 'due') {
      for (const subscription of subscriptions) await this.extend(context, subscription);
    } else {
      // A lifecycle event about a subscription we no longer hold changes nothing but the check below.
      const named = subscriptions.find((subscription) => subscription.externalId === subscriptionId);
      if (named && reason === 'reauthorization_required') await this.reauthorize(context, named);
      if (named && reason === 'subscription_removed') await this.end(context, named, 'expired', 'removed_by_provider');
    }
    return this.ensureSubscription(context, reason);
  }

  async stopSubscriptions(context: ConnectionContext): Promise<void> {
    for (const subscription of await this.subscriptions(context)) {
      const upstream = await this.graph.deleteSubscription(context.accessToken, subscription.externalId);
      await this.end(context, subscription, 'stopped', upstream === 'deleted' ? 'disconnected' : 'disconnected_already_gone');
    }
  }

  sync(context: ConnectionContext, request: SyncRequest): Promise<SyncCounts> {
    return syncOutlookCalendar(this.graph, context, request);
  }

  private subscriptions(context: ConnectionContext): Promise<readonly WebhookSubscriptionRow[]> {
    return activeWebhookSubscriptions(context.db, context.connection.id);
  }

  private async ensureSubscription(context: ConnectionContext, reason: string): Promise<SubscriptionPlan> {
    const subscriptions = await this.subscriptions(context);
    if (subscriptions.length === 0) return { renewAt: this.renewAt(await this.create(context, reason)) };
    return { renewAt: Math.min(...subscriptions.map((subscription) => this.renewAt(subscription.expiresAt ?? 0))) };
  }

  private renewAt(expiresAt: number): number {
    return expiresAt - Math.min(MAX_RENEWAL_MARGIN_MS, this.lifetimeMs / 4);
  }

  private newExpiry(context: ConnectionContext): Date {
    return new Date(context.clock().getTime() + this.lifetimeMs);
  }

  /**
   * The clientState is a fresh secret per subscription, stored encrypted and bound to the row: each
   * notification must carry it. A retry after Graph created the subscription but before the row was
   * written leaves an orphan at Graph whose notifications we refuse; it lapses within the cap.
   */
  private async create(context: ConnectionContext, reason: string): Promise<number> {
    const { connection, db, crypto, audit } = context;
    const rowId = randomUUID();
    const clientState = randomToken();
    const created = await this.graph.createSubscription(context.accessToken, { clientState, expiresAt: this.newExpiry(context) });
    await db.transaction(async (transaction) => {
      await insertWebhookSubscription(transaction, {
        id: rowId,
        connectionId: connection.id,
        provider: PROVIDER,
        kind: SUBSCRIPTION_KIND,
        externalId: created.id,
        resource: SUBSCRIBED_RESOURCE,
        resourceId: null,
        verificationEnc: crypto.encrypt(clientState, encryptedField('webhook_subscriptions', 'verification_enc', rowId)),
        expiresAt: created.expiresAt,
      });
      await audit.record(
        {
          action: 'WebhookSubscriptionCreate',
          outcome: 'success',
          actor: { type: 'system' },
          userId: connection.userId,
          provider: PROVIDER,
          connectionId: connection.id,
          details: { subscriptionId: created.id, expiresAt: created.expiresAt.toISOString(), reason },
        },
        transaction,
      );
    });
    return created.expiresAt.getTime();
  }

  /** PATCH to a new expiry; a subscription Graph no longer knows is ended here, and a new one follows. */
  private async extend(context: ConnectionContext, subscription: WebhookSubscriptionRow): Promise<void> {
    const renewed = await this.graph.renewSubscription(context.accessToken, subscription.externalId, this.newExpiry(context));
    if (renewed) await markWebhookSubscriptionRenewed(context.db, subscription.id, renewed.expiresAt);
    else await this.end(context, subscription, 'expired', 'gone_at_renewal');
  }

  /** Graph asks for fresh proof of access; where reauthorizing is refused, a renewal gives it too. */
  private async reauthorize(context: ConnectionContext, subscription: WebhookSubscriptionRow): Promise<void> {
    try {
      const outcome = await this.graph.reauthorizeSubscription(context.accessToken, subscription.externalId);
      if (outcome === 'gone') await this.end(context, subscription, 'expired', 'gone_at_reauthorization');
    } catch (error) {
      if (!(error instanceof ProviderError) || error.kind === 'transient') throw error;
      await this.extend(context, subscription);
    }
  }

  private async end(context: ConnectionContext, subscription: WebhookSubscriptionRow, status: 'stopped' | 'expired', reason: string): Promise<void> {
    const { connection, db, audit } = context;
    await db.transaction(async (transaction) => {
      await endWebhookSubscription(transaction, subscription.id, status);
      await audit.record(
        {
          action: 'WebhookSubscriptionStop',
          outcome: 'success',
          actor: { type: 'system' },
          userId: connection.userId,
          provider: PROVIDER,
          connectionId: connection.id,
          details: { subscriptionId: subscription.externalId, reason },
        },
        transaction,
      );
    });
  }
}
