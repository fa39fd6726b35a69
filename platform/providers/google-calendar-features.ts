import type { SyncCounts } from '../../db/queries/sync';
import type { GoogleSettings } from '../config';
import type { ConnectionContext, ProviderFeatures, SubscriptionPlan, SyncRequest } from './features';
import { GoogleCalendarApi } from './google-calendar-api';
import { GoogleCalendarChannels } from './google-calendar-channels';
import { syncPrimaryCalendar } from './google-calendar-sync';

/**
 * Google Calendar beyond its tokens: one push channel on the primary calendar, replaced before it
 * expires, and the incremental events sync it triggers (also run on a schedule, in case a notification is lost).
 */
export class GoogleCalendarFeatures implements ProviderFeatures {
  readonly syncIntervalSeconds: number;
  private readonly channels: GoogleCalendarChannels;

  constructor(
    private readonly settings: GoogleSettings,
    webhookBaseUrl: string,
  ) {
    this.syncIntervalSeconds = settings.syncIntervalSeconds;
    this.channels = new GoogleCalendarChannels(settings, webhookBaseUrl);
  }

  /** A re-consent keeps a channel that is still good for a while. */
  setUp(context: ConnectionContext): Promise<SubscriptionPlan> {
    return this.channels.keepOneLive(context);
  }

  /** Google sends no lifecycle events, so every renewal is a due one. */
  renewSubscriptions(context: ConnectionContext): Promise<SubscriptionPlan> {
    return this.channels.keepOneLive(context);
  }

  stopSubscriptions(context: ConnectionContext): Promise<void> {
    return this.channels.stopAll(context);
  }

  sync(context: ConnectionContext, request: SyncRequest): Promise<SyncCounts> {
    return syncPrimaryCalendar(new GoogleCalendarApi(this.settings.calendarApiUrl, context.accessToken, this.settings.requestTimeoutMs), context, request);
  }
}
