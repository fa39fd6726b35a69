import { z } from 'zod';
import { providerFetch, ProviderError, readProviderJson } from './provider-error';

const PROVIDER = 'Airbnb';
const PAGE_SIZE = 50;
/** Far beyond any host's listings or one read of reservations: a loop of pages is an Airbnb fault. */
export const MAX_PAGES = 1000;
/** Every reservation event: a booking, its alteration and its cancellation all matter to the calendar. */
export const AIRBNB_RESERVATION_EVENTS = ['reservation.created', 'reservation.updated', 'reservation.cancelled'];

/** 410 on a reservations cursor: Airbnb no longer knows where we were, so everything must be read again. */
export class ReservationCursorGoneError extends ProviderError {
  override name = 'ReservationCursorGoneError';

  constructor(message: string) {
    super('protocol', message, { status: 410, providerCode: 'cursor_expired' });
  }
}

// Airbnb ids are numbers in JSON; they are kept as text, like every external id.
const airbnbId = z.union([z.string().min(1), z.number().int().nonnegative()]).transform(String);
const day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/);
const instant = z.string().refine((value) => !Number.isNaN(Date.parse(value)), 'must be an ISO 8601 date-time');

const listingsPage = z.object({
  listings: z.array(z.object({ id: airbnbId, name: z.string() })),
  metadata: z.object({ next_offset: z.number().int().nonnegative().nullable() }),
});
export type AirbnbListing = z.infer<typeof listingsPage>['listings'][number];

const reservation = z.object({
  confirmation_code: z.string().min(1),
  listing_id: airbnbId,
  // accepted: booked; altered: booked with changed dates or guests; cancelled: by guest, host or Airbnb.
  status: z.enum(['accepted', 'altered', 'cancelled']),
  start_date: day,
  end_date: day,
  guest: z.object({ first_name: z.string().nullable() }).nullable(),
  updated_at: instant,
});
export type AirbnbReservation = z.infer<typeof reservation>;

const reservationsPage = z.object({
  reservations: z.array(reservation),
  metadata: z.object({ cursor: z.string().min(1), has_more: z.boolean() }),
});
type AirbnbReservationsPage = z.infer<typeof reservationsPage>;

const webhookSubscription = z.object({ id: airbnbId, url: z.string(), events: z.array(z.string()) });
export type AirbnbWebhookSubscription = z.infer<typeof webhookSubscription>;

const errorAnswer = z.object({ error_type: z.string().optional(), error_message: z.string().optional() });

/** The parts of Airbnb's host API a connection needs: listings, reservations and webhook subscriptions. */
export class AirbnbApi {
  constructor(
    private readonly baseUrl: string,
    private readonly clientId: string,
    private readonly accessToken: string,
    private readonly requestTimeoutMs: number,
  ) {}

  async listListings(offset: number): Promise<{ listings: AirbnbListing[]; nextOffset: number | null }> {
    const answer = await this.read(await this.call('GET', `/v2/listings?_limit=${PAGE_SIZE}&_offset=${offset}`), listingsPage, 'listings');
    return { listings: answer.listings, nextOffset: answer.metadata.next_offset };
  }

  /** One page of the reservations changed after `cursor` (all of them without one), oldest change first. */
  async listReservations(cursor: string | null): Promise<AirbnbReservationsPage> {
    const query = new URLSearchParams({ _limit: String(PAGE_SIZE), ...(cursor === null ? {} : { cursor }) });
    const response = await this.call('GET', `/v2/reservations?${query}`);
    if (response.status === 410 && cursor !== null) throw new ReservationCursorGoneError(`${PROVIDER} answered 410: the reservations cursor expired, a full sync is required`);
    return this.read(response, reservationsPage, 'reservations');
  }

  async listWebhookSubscriptions(): Promise<AirbnbWebhookSubscription[]> {
    const answer = await this.read(await this.call('GET', '/v2/webhook_subscriptions'), z.object({ webhook_subscriptions: z.array(webhookSubscription) }), 'webhook subscriptions');
    return answer.webhook_subscriptions;
  }

  async createWebhookSubscription(request: { url: string; events: string[] }): Promise<AirbnbWebhookSubscription> {
    const answer = await this.read(await this.call('POST', '/v2/webhook_subscriptions', request), z.object({ webhook_subscription: webhookSubscription }), 'webhook subscription');
    return answer.webhook_subscription;
  }

  /** `not_found`: the subscription is gone already, which is what deleting it wanted. */
  async deleteWebhookSubscription(id: string): Promise<'deleted' | 'not_found'> {
    const response = await this.call('DELETE', `/v2/webhook_subscriptions/${encodeURIComponent(id)}`);
    if (response.status === 404) return 'not_found';
    if (!response.ok) throw await this.failure(response, 'webhook subscription delete');
    return 'deleted';
  }

  private call(method: 'GET' | 'POST' | 'DELETE', path: string, body?: object): Promise<Response> {
    return providerFetch(
      PROVIDER,
      `${this.baseUrl}${path}`,
      {
        method,
        headers: {
          // Airbnb's API names the app by its key and the host by the OAuth token, each in its own header.
          'x-airbnb-api-key': this.clientId,
          'x-airbnb-oauth-token': this.accessToken,
          accept: 'application/json',
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
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
    const code = parsed.success ? parsed.data.error_type : undefined;
    const message = `${PROVIDER} ${operation} answered ${response.status}${code ? ` ${code}` : ''}: ${(parsed.success && parsed.data.error_message) || response.statusText}`;
    const details = { status: response.status, ...(code ? { providerCode: code } : {}) };
    // The workflow refreshes before provider work, so a 401 is a race with expiry or a grant that is gone;
    // the next refresh tells which, and answers invalid_grant in the second case.
    if (response.status === 401 || response.status === 429 || response.status >= 500) return new ProviderError('transient', message, details);
    return new ProviderError('protocol', message, details);
  }
}
