import { randomUUID } from 'node:crypto';
import { encryptedField } from '../../db/encrypted-columns';
import {
  activeWebhookSubscriptions,
  endWebhookSubscription,
  insertWebhookSubscription,
  markWebhookSubscriptionRenewed,
  recordWebhookSubscriptionCreated,
  type WebhookSubscriptionRow,
} from '../../db/queries/webhook-subscriptions';
import type { SyncCounts } from '../../db/queries/sync';
import type { MicrosoftSettings } from '../config';
import { randomToken } from '../secrets';
import type { ConnectionContext, ProviderFeatures, RenewalReason, SubscriptionPlan, SyncRequest } from './features';
import { syncOutlookCalendar } from './microsoft-calendar-sync';
import { MAX_SUBSCRIPTION_MINUTES, MicrosoftGraphClient, SUBSCRIBED_RESOURCE, type GraphSubscription } from './microsoft-graph';
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
    this.graph = new MicrosoftGraphClient(settings.graphUrl, webhookBaseUrl, settings.requestTimeoutMs);
    this.lifetimeMs = Math.min(settings.subscriptionMinutes, MAX_SUBSCRIPTION_MINUTES - CAP_MARGIN_MINUTES) * 60_000;
  }

  /** Keeps a live subscription after a re-consent; creates one when there is none. */
  async setUp(context: ConnectionContext): Promise<SubscriptionPlan> {
    await this.settleUnanswered(context);
    return this.ensureSubscription(context, 'connected');
  }

  async renewSubscriptions(context: ConnectionContext, reason: RenewalReason, subscriptionId?: string): Promise<SubscriptionPlan> {
    await this.settleUnanswered(context);
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
    try {
      await this.settleUnanswered(context);
    } catch (error) {
      // A token Graph refuses finds nothing either: such rows are ended below, whatever Graph holds lapses.
      if (!(error instanceof ProviderError && (error.details.status === 401 || error.details.status === 403))) throw error;
    }
    for (const subscription of await this.subscriptions(context)) {
      const upstream = isUnanswered(subscription) ? 'unanswered' : await this.graph.deleteSubscription(context.accessToken, subscription.externalId);
      if (upstream === 'deleted') await this.end(context, subscription, 'stopped', 'disconnected');
      else if (upstream === 'already_gone') await this.end(context, subscription, 'stopped', 'disconnected_already_gone');
      else await this.end(context, subscription, 'failed', upstream === 'refused' ? 'disconnected_token_refused' : 'disconnected_unanswered');
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
    // Settled already, so every subscription has the expiry Graph granted.
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
   * notification must carry it. The row is written before Graph is asked and its id travels in the
   * notification URL, so an attempt whose answer is lost leaves a row the next attempt settles.
   */
  private async create(context: ConnectionContext, reason: string): Promise<number> {
    const { connection, db, crypto } = context;
    const rowId = randomUUID();
    const clientState = randomToken();
    await insertWebhookSubscription(db, {
      id: rowId,
      connectionId: connection.id,
      provider: PROVIDER,
      kind: SUBSCRIPTION_KIND,
      // Graph's id replaces this once Graph answers; until then no notification can name the row.
      externalId: rowId,
      resource: SUBSCRIBED_RESOURCE,
      resourceId: null,
      verificationEnc: crypto.encrypt(clientState, encryptedField('webhook_subscriptions', 'verification_enc', rowId)),
      expiresAt: null,
    });
    let created: GraphSubscription;
    try {
      created = await this.graph.createSubscription(context.accessToken, { rowReference: rowId, clientState, expiresAt: this.newExpiry(context) });
    } catch (error) {
      // A refusal created nothing; after a timeout or an outage only Graph's list can tell, so the row stays for that.
      if (error instanceof ProviderError && error.kind !== 'transient') await endWebhookSubscription(db, rowId, 'failed');
      throw error;
    }
    await this.recordCreated(context, rowId, created, reason);
    return created.expiresAt.getTime();
  }

  /**
   * Rows whose creation answer never came (a timeout, a worker that died after Graph answered): the
   * subscription Graph made for one is adopted, a row Graph holds nothing for is ended. Either way no
   * second subscription is created beside one Graph already has.
   */
  private async settleUnanswered(context: ConnectionContext): Promise<void> {
    const unanswered = (await this.subscriptions(context)).filter(isUnanswered);
    if (unanswered.length === 0) return;
    const atGraph = await this.graph.listSubscriptions(context.accessToken);
    for (const row of unanswered) {
      const created = atGraph.find((subscription) => subscription.rowReference === row.id);
      if (created) await this.recordCreated(context, row.id, created, 'answer_lost');
      else await this.end(context, row, 'failed', 'never_created');
    }
  }

  private async recordCreated(context: ConnectionContext, rowId: string, created: GraphSubscription, reason: string): Promise<void> {
    const { connection, db, audit } = context;
    await db.transaction(async (transaction) => {
      await recordWebhookSubscriptionCreated(transaction, rowId, { externalId: created.id, expiresAt: created.expiresAt });
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

  private async end(context: ConnectionContext, subscription: WebhookSubscriptionRow, status: 'stopped' | 'expired' | 'failed', reason: string): Promise<void> {
    const { connection, db, audit } = context;
    await db.transaction(async (transaction) => {
      await endWebhookSubscription(transaction, subscription.id, status);
      await audit.record(
        {
          action: 'WebhookSubscriptionStop',
          outcome: status === 'failed' ? 'failure' : 'success',
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

/** Recorded before Graph was asked, and Graph's answer (its id, the expiry it granted) not yet with it. */
function isUnanswered(subscription: WebhookSubscriptionRow): boolean {
  return subscription.expiresAt === null;
}
