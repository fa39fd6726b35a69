import type { SyncCounts } from '../../db/queries/sync';
import type { AirbnbSettings, OAuthClientCredentials } from '../config';
import { AirbnbApi } from './airbnb-api';
import { mapListings } from './airbnb-listings';
import { AirbnbWebhookSubscriptions } from './airbnb-subscriptions';
import { syncReservations } from './airbnb-sync';
import type { ConnectionContext, ProviderFeatures, SubscriptionPlan, SyncRequest } from './features';

/** Airbnb webhook subscriptions do not expire: the workflow never needs to come back to renew them. */
const NO_RENEWAL: SubscriptionPlan = { renewAt: null };

/**
 * Airbnb beyond its tokens: the listing → property mapping, one reservation webhook subscription, and
 * the reservation sync that the webhooks trigger (also run on a schedule, in case an event is lost).
 */
export class AirbnbReservationFeatures implements ProviderFeatures {
  readonly syncIntervalSeconds: number;
  private readonly subscriptions: AirbnbWebhookSubscriptions;

  constructor(
    private readonly settings: AirbnbSettings,
    private readonly credentials: OAuthClientCredentials,
    webhookBaseUrl: string,
  ) {
    this.syncIntervalSeconds = settings.syncIntervalSeconds;
    this.subscriptions = new AirbnbWebhookSubscriptions(webhookBaseUrl);
  }

  async setUp(context: ConnectionContext): Promise<SubscriptionPlan> {
    const api = this.api(context);
    await mapListings(api, context);
    await this.subscribe(api, context);
    return NO_RENEWAL;
  }

  /** Airbnb sends no lifecycle events; a renewal (an operator's request) just makes sure the subscription is there. */
  async renewSubscriptions(context: ConnectionContext): Promise<SubscriptionPlan> {
    await this.subscribe(this.api(context), context);
    return NO_RENEWAL;
  }

  stopSubscriptions(context: ConnectionContext): Promise<void> {
    return this.subscriptions.stopAll(this.api(context), context);
  }

  /** Airbnb may drop a subscription whose deliveries kept failing; each sync checks (one request) that it is still there. */
  async sync(context: ConnectionContext, request: SyncRequest): Promise<SyncCounts> {
    const api = this.api(context);
    await this.subscribe(api, context);
    return syncReservations(api, context, request);
  }

  /** Without a signing secret our endpoint refuses every event, so there is no point subscribing; the schedule carries the sync. */
  private async subscribe(api: AirbnbApi, context: ConnectionContext): Promise<void> {
    if (this.settings.webhook.secret !== undefined) await this.subscriptions.ensureOne(api, context);
  }

  private api(context: ConnectionContext): AirbnbApi {
    return new AirbnbApi(this.settings.apiUrl, this.credentials.clientId, context.accessToken, this.settings.requestTimeoutMs);
  }
}
