import { z } from 'zod';
import { providerFetch, ProviderError } from './provider-error';

const PROVIDER = 'Microsoft Graph';
/** Graph caps Outlook event subscriptions at 10080 minutes (7 days). */
export const MAX_SUBSCRIPTION_MINUTES = 10080;
export const MICROSOFT_GRAPH_WEBHOOK_PATH = '/api/v1/webhooks/microsoft-graph';
export const MICROSOFT_GRAPH_LIFECYCLE_PATH = `${MICROSOFT_GRAPH_WEBHOOK_PATH}/lifecycle`;
/** What the subscriptions watch; the sync reads the same calendar through calendarView/delta. */
export const SUBSCRIBED_RESOURCE = 'me/events';
const DELTA_PAGE_SIZE = 100;
/** Far more than one user's subscriptions from one app: a loop of links is a Graph fault. */
const MAX_LIST_PAGES = 100;
/**
 * Names our webhook_subscriptions row in the notification URL, so a subscription whose creation answer
 * was lost can be found in Graph's list (Graph passes query parameters of the URL through unchanged).
 */
const ROW_REFERENCE_PARAM = 'ref';

export interface GraphSubscription {
  id: string;
  expiresAt: Date;
}

/** A subscription from Graph's list, with the row reference its notification URL carries, if any. */
export interface ListedGraphSubscription extends GraphSubscription {
  rowReference: string | null;
}

/** One entry of a delta page: an event as it is now, or the news that it is gone from the window. */
export type GraphEventChange =
  | { id: string; removed: true }
  | { id: string; removed: false; title: string | null; startsAt: Date; endsAt: Date; allDay: boolean; blocksTime: boolean; updatedAt: Date | null };

export type DeltaPage = { changes: GraphEventChange[]; nextLink?: string; deltaLink?: string } | 'sync_state_gone';

const subscriptionAnswer = z.object({ id: z.string().min(1), expirationDateTime: z.string().datetime({ offset: true }) });
const subscriptionListAnswer = z.object({
  value: z.array(subscriptionAnswer.extend({ notificationUrl: z.string() })),
  '@odata.nextLink': z.string().url().optional(),
});
const graphDateTime = z.object({ dateTime: z.string(), timeZone: z.string() });
const deltaItem = z.union([
  z.object({ id: z.string().min(1), '@removed': z.object({ reason: z.string().optional() }) }),
  z.object({
    id: z.string().min(1),
    subject: z.string().nullish(),
    start: graphDateTime,
    end: graphDateTime,
    isAllDay: z.boolean().optional(),
    isCancelled: z.boolean().optional(),
    showAs: z.string().optional(),
    lastModifiedDateTime: z.string().datetime({ offset: true }).optional(),
  }),
]);
const deltaAnswer = z.object({
  value: z.array(deltaItem),
  '@odata.nextLink': z.string().url().optional(),
  '@odata.deltaLink': z.string().url().optional(),
});
const errorAnswer = z.object({ error: z.object({ code: z.string(), message: z.string().optional() }) });
/** Graph's codes for a delta token it no longer knows; 410 Gone says the same. */
const SYNC_STATE_GONE = new Set(['syncstatenotfound', 'syncstateinvalid', 'resyncrequired']);

/**
 * The few Microsoft Graph calls a calendar connection needs: change-notification subscriptions
 * (create, renew, reauthorize, delete) and calendarView delta reads.
 */
export class MicrosoftGraphClient {
  private readonly graphOrigin: string;

  constructor(
    private readonly graphUrl: string,
    private readonly webhookBaseUrl: string,
    private readonly requestTimeoutMs: number,
  ) {
    this.graphOrigin = new URL(graphUrl).origin;
  }

  /** Graph validates both URLs (the handshake) before it answers; the lifecycle URL can only be set here. */
  async createSubscription(accessToken: string, input: { rowReference: string; clientState: string; expiresAt: Date }): Promise<GraphSubscription> {
    const notificationUrl = new URL(`${this.webhookBaseUrl}${MICROSOFT_GRAPH_WEBHOOK_PATH}`);
    notificationUrl.searchParams.set(ROW_REFERENCE_PARAM, input.rowReference);
    const response = await this.call(accessToken, 'POST', '/subscriptions', {
      changeType: 'created,updated,deleted',
      notificationUrl: notificationUrl.toString(),
      lifecycleNotificationUrl: `${this.webhookBaseUrl}${MICROSOFT_GRAPH_LIFECYCLE_PATH}`,
      resource: SUBSCRIBED_RESOURCE,
      expirationDateTime: input.expiresAt.toISOString(),
      clientState: input.clientState,
    });
    if (response.status !== 201 && response.status !== 200) throw await graphError(response);
    return readSubscription(response);
  }

  /** null: Graph no longer knows the subscription (it expired or was removed). */
  async renewSubscription(accessToken: string, subscriptionId: string, expiresAt: Date): Promise<GraphSubscription | null> {
    const response = await this.call(accessToken, 'PATCH', `/subscriptions/${encodeURIComponent(subscriptionId)}`, { expirationDateTime: expiresAt.toISOString() });
    if (response.status === 404) return null;
    if (!response.ok) throw await graphError(response);
    return readSubscription(response);
  }

  async reauthorizeSubscription(accessToken: string, subscriptionId: string): Promise<'reauthorized' | 'gone'> {
    const response = await this.call(accessToken, 'POST', `/subscriptions/${encodeURIComponent(subscriptionId)}/reauthorize`);
    if (response.status === 404) return 'gone';
    if (!response.ok) throw await graphError(response);
    return 'reauthorized';
  }

  /** The subscriptions this app holds for the signed-in user (Graph lists no other app's, no other user's). */
  async listSubscriptions(accessToken: string): Promise<ListedGraphSubscription[]> {
    const listed: ListedGraphSubscription[] = [];
    let url = `${this.graphUrl}/subscriptions`;
    for (let pages = 1; pages <= MAX_LIST_PAGES; pages++) {
      const response = await this.send(accessToken, 'GET', this.graphLink(url));
      if (!response.ok) throw await graphError(response);
      const parsed = subscriptionListAnswer.safeParse(await response.json().catch(() => undefined));
      if (!parsed.success) throw new ProviderError('protocol', `${PROVIDER} subscription list is malformed`);
      for (const entry of parsed.data.value) {
        const rowReference = URL.canParse(entry.notificationUrl) ? new URL(entry.notificationUrl).searchParams.get(ROW_REFERENCE_PARAM) : null;
        listed.push({ id: entry.id, expiresAt: new Date(entry.expirationDateTime), rowReference });
      }
      const nextLink = parsed.data['@odata.nextLink'];
      if (!nextLink) return listed;
      url = nextLink;
    }
    throw new ProviderError('protocol', `${PROVIDER} subscription list did not end within ${MAX_LIST_PAGES} pages`);
  }

  /**
   * `refused`: Graph turned our token away (401/403). Nothing we hold can delete the subscription then,
   * so retrying is pointless; it lapses at Graph by its expiry, within the 7-day cap.
   */
  async deleteSubscription(accessToken: string, subscriptionId: string): Promise<'deleted' | 'already_gone' | 'refused'> {
    const response = await this.call(accessToken, 'DELETE', `/subscriptions/${encodeURIComponent(subscriptionId)}`);
    if (response.status === 404) return 'already_gone';
    if (response.status === 401 || response.status === 403) return 'refused';
    if (!response.ok) throw await graphError(response);
    return 'deleted';
  }

  /** Where a full read of the calendar between the two times starts. */
  calendarDeltaUrl(window: { start: Date; end: Date }): string {
    const url = new URL(`${this.graphUrl}/me/calendarView/delta`);
    url.search = new URLSearchParams({ startDateTime: window.start.toISOString(), endDateTime: window.end.toISOString() }).toString();
    return url.toString();
  }

  /** One page of a delta read; `url` is the start URL, a nextLink or a deltaLink. */
  async readDeltaPage(accessToken: string, url: string): Promise<DeltaPage> {
    const response = await this.send(accessToken, 'GET', this.graphLink(url), undefined, {
      prefer: `outlook.timezone="UTC", odata.maxpagesize=${DELTA_PAGE_SIZE}`,
    });
    if (!response.ok) {
      const error = await graphError(response);
      if (response.status === 410 || SYNC_STATE_GONE.has(error.details.providerCode?.toLowerCase() ?? '')) return 'sync_state_gone';
      throw error;
    }
    const parsed = deltaAnswer.safeParse(await response.json().catch(() => undefined));
    if (!parsed.success) throw new ProviderError('protocol', `${PROVIDER} delta page is malformed: ${parsed.error.issues[0]?.path.join('.') ?? 'unknown'}`);
    const { value, '@odata.nextLink': nextLink, '@odata.deltaLink': deltaLink } = parsed.data;
    return { changes: value.map(readChange), ...(nextLink ? { nextLink } : {}), ...(deltaLink ? { deltaLink } : {}) };
  }

  /** Links come from Graph's answers and are followed with our bearer token: only to Graph itself. */
  private graphLink(url: string): string {
    if (!URL.canParse(url) || new URL(url).origin !== this.graphOrigin) throw new ProviderError('protocol', `${PROVIDER} sent a link to another host`);
    return url;
  }

  private call(accessToken: string, method: string, path: string, body?: object): Promise<Response> {
    return this.send(accessToken, method, `${this.graphUrl}${path}`, body);
  }

  private send(accessToken: string, method: string, url: string, body?: object, headers: Record<string, string> = {}): Promise<Response> {
    return providerFetch(
      PROVIDER,
      url,
      {
        method,
        headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
        ...(body ? { body: JSON.stringify(body) } : {}),
      },
      this.requestTimeoutMs,
    );
  }
}

async function readSubscription(response: Response): Promise<GraphSubscription> {
  const parsed = subscriptionAnswer.safeParse(await response.json().catch(() => undefined));
  if (!parsed.success) throw new ProviderError('protocol', `${PROVIDER} subscription answer is malformed`);
  return { id: parsed.data.id, expiresAt: new Date(parsed.data.expirationDateTime) };
}

function readChange(item: z.infer<typeof deltaItem>): GraphEventChange {
  if ('@removed' in item) return { id: item.id, removed: true };
  const allDay = item.isAllDay ?? false;
  return {
    id: item.id,
    removed: false,
    title: item.subject ?? null,
    startsAt: readDateTime(item.start, allDay),
    endsAt: readDateTime(item.end, allDay),
    allDay,
    // A cancelled meeting or one shown as free leaves the owner available.
    blocksTime: !item.isCancelled && item.showAs !== 'free',
    updatedAt: item.lastModifiedDateTime ? new Date(item.lastModifiedDateTime) : null,
  };
}

/**
 * Graph writes times without an offset, in the zone we asked for (UTC). All-day events are dates
 * that hold in any zone, so they become midnight UTC to midnight UTC, as calendar_events stores them.
 */
function readDateTime(value: z.infer<typeof graphDateTime>, allDay: boolean): Date {
  const instant = allDay ? `${value.dateTime.slice(0, 10)}T00:00:00Z` : `${value.dateTime}Z`;
  if (value.timeZone !== 'UTC' || Number.isNaN(Date.parse(instant))) {
    throw new ProviderError('protocol', `${PROVIDER} sent an event time that is not UTC (${value.timeZone})`);
  }
  return new Date(instant);
}

/** Graph's error shape `{error: {code, message}}`; 429 and 5xx are worth retrying, the rest is not. */
async function graphError(response: Response): Promise<ProviderError> {
  const parsed = errorAnswer.safeParse(await response.json().catch(() => undefined));
  const code = parsed.success ? parsed.data.error.code : undefined;
  const message = `${PROVIDER} answered ${response.status}${code ? ` ${code}` : ''}: ${(parsed.success && parsed.data.error.message) || response.statusText}`;
  const details = { status: response.status, ...(code ? { providerCode: code } : {}) };
  // 401: the access token was refused; the connection's next refresh tells whether the grant itself is gone.
  if (response.status >= 500 || response.status === 429 || response.status === 401) return new ProviderError('transient', message, details);
  return new ProviderError('protocol', message, details);
}
