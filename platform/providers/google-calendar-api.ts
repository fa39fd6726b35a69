import { z } from 'zod';
import { providerFetch, ProviderError, readProviderJson } from './provider-error';

const PROVIDER = 'Google Calendar';
const PAGE_SIZE = '250';
/** Google answers quota exhaustion with 403 and one of these reasons; they pass like a 429. */
const RATE_LIMIT_REASONS = new Set(['rateLimitExceeded', 'userRateLimitExceeded', 'quotaExceeded']);

/** 410 on a sync token: Google no longer knows where we were, so everything must be read again. */
export class SyncTokenGoneError extends ProviderError {
  override name = 'SyncTokenGoneError';

  constructor(message: string) {
    super('protocol', message, { status: 410, providerCode: 'fullSyncRequired' });
  }
}

const day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/);
const instant = z.string().refine((value) => !Number.isNaN(Date.parse(value)), 'must be an RFC 3339 date-time');
const eventTime = z.object({ date: day.optional(), dateTime: instant.optional() });

/** An event as events.list returns it; cancelled ones in incremental answers may carry nothing but id and status. */
const calendarEvent = z.object({
  id: z.string().min(1),
  status: z.string().optional(),
  summary: z.string().optional(),
  start: eventTime.optional(),
  end: eventTime.optional(),
  updated: instant.optional(),
  transparency: z.string().optional(),
});
export type GoogleCalendarEvent = z.infer<typeof calendarEvent>;
const eventId = z.object({ id: z.string().min(1) });

// Events are read one by one, so that one Google describes oddly does not make the page unreadable.
const eventsPage = z.object({
  items: z.array(z.unknown()).default([]),
  nextPageToken: z.string().min(1).optional(),
  nextSyncToken: z.string().min(1).optional(),
});

export interface GoogleEventsPage {
  items: GoogleCalendarEvent[];
  /** Ids of the items that are not events as documented (null where even the id is missing). */
  unreadable: Array<string | null>;
  nextPageToken?: string;
  nextSyncToken?: string;
}

// Google sends int64 values such as `expiration` as strings.
const watchAnswer = z.object({ id: z.string().min(1), resourceId: z.string().min(1), expiration: z.coerce.number().int().positive() });

const errorAnswer = z.object({
  error: z.object({ message: z.string().optional(), errors: z.array(z.object({ reason: z.string().optional() })).optional() }),
});

export interface ChannelRequest {
  id: string;
  /** Echoed in every notification as X-Goog-Channel-Token: how the receiver knows the notification is genuine. */
  token: string;
  address: string;
  ttlSeconds: number;
}

/** Calendar API v3, the parts a sync needs: events.list, events.watch and channels.stop. */
export class GoogleCalendarApi {
  constructor(
    private readonly baseUrl: string,
    private readonly accessToken: string,
    private readonly requestTimeoutMs: number,
  ) {}

  /** One page; a sync token lists only what changed since it was issued, deleted events included. */
  async listEvents(calendarId: string, page: { syncToken?: string; pageToken?: string }): Promise<GoogleEventsPage> {
    const query = new URLSearchParams({ maxResults: PAGE_SIZE, singleEvents: 'true', showDeleted: String(page.syncToken !== undefined) });
    if (page.syncToken !== undefined) query.set('syncToken', page.syncToken);
    if (page.pageToken !== undefined) query.set('pageToken', page.pageToken);
    const response = await this.call('GET', `/calendars/${encodeURIComponent(calendarId)}/events?${query}`);
    if (response.status === 410 && page.syncToken !== undefined) throw new SyncTokenGoneError(`${PROVIDER} answered 410: the sync token expired, a full sync is required`);
    const { items, ...tokens } = await this.read(response, eventsPage, 'events.list');
    const read: GoogleEventsPage = { ...tokens, items: [], unreadable: [] };
    for (const item of items) {
      const event = calendarEvent.safeParse(item);
      if (event.success) read.items.push(event.data);
      else read.unreadable.push(eventId.safeParse(item).data?.id ?? null);
    }
    return read;
  }

  async watchEvents(calendarId: string, channel: ChannelRequest): Promise<{ resourceId: string; expiresAt: Date }> {
    const response = await this.call('POST', `/calendars/${encodeURIComponent(calendarId)}/events/watch`, {
      id: channel.id,
      type: 'web_hook',
      address: channel.address,
      token: channel.token,
      params: { ttl: String(channel.ttlSeconds) },
    });
    const answer = await this.read(response, watchAnswer, 'events.watch');
    if (answer.id !== channel.id) throw new ProviderError('protocol', `${PROVIDER} events.watch answered for another channel`);
    return { resourceId: answer.resourceId, expiresAt: new Date(answer.expiration) };
  }

  /** `not_found`: the channel expired or was stopped already, which is what stopping wanted. */
  async stopChannel(channel: { id: string; resourceId: string }): Promise<'stopped' | 'not_found'> {
    const response = await this.call('POST', '/channels/stop', channel);
    if (response.status === 404) return 'not_found';
    if (!response.ok) throw await this.failure(response, 'channels.stop');
    return 'stopped';
  }

  private call(method: 'GET' | 'POST', path: string, body?: object): Promise<Response> {
    return providerFetch(
      PROVIDER,
      `${this.baseUrl}${path}`,
      {
        method,
        headers: { authorization: `Bearer ${this.accessToken}`, accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      },
      this.requestTimeoutMs,
    );
  }

  private async read<T>(response: Response, schema: z.ZodType<T, z.ZodTypeDef, unknown>, operation: string): Promise<T> {
    if (!response.ok) throw await this.failure(response, operation);
    return readProviderJson(PROVIDER, `${operation} answer`, response, schema);
  }

  private async failure(response: Response, operation: string): Promise<ProviderError> {
    const parsed = errorAnswer.safeParse(await response.json().catch(() => undefined));
    const reason = parsed.success ? parsed.data.error.errors?.[0]?.reason : undefined;
    const message = `${PROVIDER} ${operation} answered ${response.status}${reason ? ` ${reason}` : ''}: ${(parsed.success && parsed.data.error.message) || response.statusText}`;
    const details = { status: response.status, ...(reason ? { providerCode: reason } : {}) };
    // The workflow refreshes before provider work, so a 401 here is either a race with expiry or a grant
    // that is gone; the next refresh tells which, and answers invalid_grant in the second case.
    if (response.status === 401 || response.status === 429 || response.status >= 500) return new ProviderError('transient', message, details);
    if (response.status === 403 && reason !== undefined && RATE_LIMIT_REASONS.has(reason)) return new ProviderError('transient', message, details);
    return new ProviderError('protocol', message, details);
  }
}
