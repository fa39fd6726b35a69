import { randomUUID } from 'node:crypto';
import { encryptedField } from '../../db/encrypted-columns';
import {
  activeWebhookSubscriptions,
  endWebhookSubscription,
  insertWebhookSubscription,
  recordWebhookSubscriptionGranted,
  type WebhookSubscriptionRow,
} from '../../db/queries/webhook-subscriptions';
import { randomToken } from '../secrets';
import type { ConnectionContext, SubscriptionPlan } from './features';
import { GoogleCalendarApi } from './google-calendar-api';
import { ProviderError } from './provider-error';

const PROVIDER = 'google-calendar';
const CHANNEL_KIND = 'push-channel';
export const WATCHED_CALENDAR = 'primary';
const WATCHED_RESOURCE = `calendars/${WATCHED_CALENDAR}/events`;
export const GOOGLE_CALENDAR_WEBHOOK_PATH = '/api/v1/webhooks/google-calendar';
const DAY_MS = 24 * 3600 * 1000;

type StopOutcome = 'stopped' | 'already_gone' | 'expired' | 'unauthorized' | 'unrecorded';

/**
 * Google push channels on the user's primary calendar. A channel cannot be extended: before one
 * expires a new one is opened and the old one stopped, so notifications never have a gap.
 */
export class GoogleCalendarChannels {
  /** A tenth of the lifetime, at most a day: room for a Google outage, retried every few minutes. */
  private readonly renewalMarginMs: number;

  constructor(
    private readonly settings: { calendarApiUrl: string; channelTtlSeconds: number; requestTimeoutMs: number },
    private readonly webhookBaseUrl: string,
  ) {
    this.renewalMarginMs = Math.min(DAY_MS, settings.channelTtlSeconds * 100);
  }

  /**
   * Leaves exactly one channel that is not yet due for renewal: the newest such one is kept (so a
   * retried renewal opens no second channel), otherwise a new one is opened; every other channel is stopped.
   */
  async keepOneLive(context: ConnectionContext): Promise<SubscriptionPlan> {
    const now = context.clock().getTime();
    const active = await activeWebhookSubscriptions(context.db, context.connection.id);
    const fresh = active.flatMap(({ id, resourceId, expiresAt }) =>
      resourceId !== null && expiresAt !== null && !this.isDue(expiresAt, now) ? [{ id, resourceId, expiresAt }] : []);
    const kept = fresh.at(-1) ?? (await this.open(context));
    for (const channel of active) if (channel.id !== kept.id) await this.stop(context, channel, 'replaced', kept.resourceId);
    return { renewAt: kept.expiresAt - this.renewalMarginMs };
  }

  /** On disconnect. A token Google refuses cannot stop anything; such channels lapse at their expiry. */
  async stopAll(context: ConnectionContext): Promise<void> {
    const active = await activeWebhookSubscriptions(context.db, context.connection.id);
    const calendarResourceId = active.find((channel) => channel.resourceId !== null)?.resourceId ?? null;
    for (const channel of active) await this.stop(context, channel, 'disconnected', calendarResourceId);
  }

  private isDue(expiresAt: number, now: number): boolean {
    return now >= expiresAt - this.renewalMarginMs;
  }

  /**
   * Recorded before Google is asked, because Google sends the channel's `sync` message at once and the
   * receiver must know the channel by then.
   */
  private async open(context: ConnectionContext): Promise<{ id: string; resourceId: string; expiresAt: number }> {
    const { db, crypto, connection } = context;
    const id = randomUUID();
    const token = randomToken();
    await insertWebhookSubscription(db, {
      id,
      connectionId: connection.id,
      provider: PROVIDER,
      kind: CHANNEL_KIND,
      externalId: id,
      resource: WATCHED_RESOURCE,
      resourceId: null,
      verificationEnc: crypto.encrypt(token, encryptedField('webhook_subscriptions', 'verification_enc', id)),
      expiresAt: new Date(context.clock().getTime() + this.settings.channelTtlSeconds * 1000),
    });
    let granted: { resourceId: string; expiresAt: Date };
    try {
      granted = await this.api(context).watchEvents(WATCHED_CALENDAR, {
        id,
        token,
        address: `${this.webhookBaseUrl}${GOOGLE_CALENDAR_WEBHOOK_PATH}`,
        ttlSeconds: this.settings.channelTtlSeconds,
      });
    } catch (error) {
      // Without Google's answer (a timeout, a 5xx) the channel may exist all the same: the row stays active
      // so that the next renewal or the disconnect stops it. An HTTP refusal means nothing was created.
      if (error instanceof ProviderError && error.details.status !== undefined && error.details.status < 500) await endWebhookSubscription(db, id, 'failed');
      throw error;
    }
    await db.transaction(async (transaction) => {
      await recordWebhookSubscriptionGranted(transaction, id, granted);
      await context.audit.record(
        {
          action: 'WebhookSubscriptionCreate',
          outcome: 'success',
          actor: { type: 'system' },
          userId: connection.userId,
          provider: PROVIDER,
          connectionId: connection.id,
          details: { subscriptionId: id, resource: WATCHED_RESOURCE, expiresAt: granted.expiresAt.toISOString() },
        },
        transaction,
      );
    });
    return { id, resourceId: granted.resourceId, expiresAt: granted.expiresAt.getTime() };
  }

  /**
   * `calendarResourceId` is what Google named the primary calendar for another channel: the resource id is
   * the watched calendar's, the same for every channel on it, so it also stops a channel whose watch answer was lost.
   */
  private async stop(context: ConnectionContext, channel: WebhookSubscriptionRow, reason: 'replaced' | 'disconnected', calendarResourceId: string | null): Promise<void> {
    const outcome = await this.stopUpstream(context, channel, channel.resourceId ?? calendarResourceId);
    const ended = outcome === 'stopped' || outcome === 'already_gone' ? 'stopped' : outcome === 'expired' ? 'expired' : 'failed';
    await context.db.transaction(async (transaction) => {
      await endWebhookSubscription(transaction, channel.id, ended);
      await context.audit.record(
        {
          action: 'WebhookSubscriptionStop',
          outcome: ended === 'failed' ? 'failure' : 'success',
          actor: { type: 'system' },
          userId: context.connection.userId,
          provider: PROVIDER,
          connectionId: context.connection.id,
          details: { subscriptionId: channel.id, reason, upstream: outcome },
        },
        transaction,
      );
    });
  }

  private async stopUpstream(context: ConnectionContext, channel: WebhookSubscriptionRow, resourceId: string | null): Promise<StopOutcome> {
    if (channel.expiresAt !== null && channel.expiresAt <= context.clock().getTime()) return 'expired';
    // channels.stop needs a resource id, and no active channel of the calendar has one recorded.
    if (resourceId === null) return 'unrecorded';
    try {
      const upstream = await this.api(context).stopChannel({ id: channel.externalId, resourceId });
      return upstream === 'stopped' ? 'stopped' : 'already_gone';
    } catch (error) {
      // Stopping is attempted with whatever token the connection has left; Google refusing it is final for this channel.
      if (error instanceof ProviderError && error.details.status === 401) return 'unauthorized';
      throw error;
    }
  }

  private api(context: ConnectionContext): GoogleCalendarApi {
    return new GoogleCalendarApi(this.settings.calendarApiUrl, context.accessToken, this.settings.requestTimeoutMs);
  }
}
