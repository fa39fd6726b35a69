// Google Calendar API v3 in the fake Google (fakes/google.ts): a primary calendar per Google account that
// tests edit, events.list with sync tokens (changes since the token, deletions as `cancelled`, paging,
// 410 once tokens expire), calendarList, and the bearer check every Calendar endpoint shares.
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FakeGoogleCall } from './google';
import type { GoogleTokenStore } from './google-tokens';

export interface FakeEventInput {
  summary?: string;
  /** `YYYY-MM-DD` for an all-day event (the end day is exclusive), otherwise an RFC 3339 date-time. */
  start: string;
  end: string;
  transparent?: boolean;
  /** Fields sent in place of the usual ones (undefined leaves one out), for an event Google describes oddly. */
  wire?: Record<string, unknown>;
}

interface StoredEvent extends FakeEventInput {
  id: string;
  status: 'confirmed' | 'cancelled';
  updated: number;
  /** Position in the fake's change log: a sync token lists what changed after its own position. */
  changedAt: number;
}

export interface FakeCalendar {
  /** Returns the new event's id. */
  add(event: FakeEventInput): string;
  change(id: string, changes: Partial<FakeEventInput>): void;
  remove(id: string): void;
}

export interface CalendarApiSwitches {
  /** Items per events.list page; Google pages at maxResults (250 unless asked otherwise). */
  eventsPageSize: number;
  /** Every sync token issued so far answers 410 Gone, as Google does once it has forgotten them. */
  expireSyncTokens(): void;
  /** The next `count` Calendar API calls fail with `status` (429 or 5xx). */
  failNextApiCalls(count: number, status?: number): void;
  /** events.list names a next page on every page, never the last one, as a misbehaving server would. */
  endlessPages: boolean;
  /**
   * The next `count` events.watch calls open their channel, then drop the connection unanswered: the
   * caller never learns the channel's resource id, as when the answer is lost to a timeout.
   */
  loseNextWatchAnswers(count: number): void;
}

type CalendarEndpoint = 'calendarList' | 'eventsList' | 'eventsWatch' | 'channelsStop';

interface PageCursor {
  account: string;
  items: object[];
  offset: number;
  /** The change-log position the last page's nextSyncToken stands for. */
  syncPosition: number;
}

const DEFAULT_PAGE_SIZE = 250;

export function googleApiError(status: number, reason: string, message: string): object {
  return { error: { errors: [{ domain: 'global', reason, message }], code: status, message } };
}

function opaque(prefix: string): string {
  return prefix + randomBytes(18).toString('base64url');
}

function timeOf(value: string): { date: string } | { dateTime: string } {
  return /^\d{4}-\d{2}-\d{2}$/.test(value) ? { date: value } : { dateTime: new Date(value).toISOString() };
}

function wireEvent(event: StoredEvent): object {
  const head = { kind: 'calendar#event', etag: `"${event.changedAt}"`, id: event.id, status: event.status };
  // Google describes a deleted event by its id and status only.
  if (event.status === 'cancelled') return head;
  return {
    ...head,
    summary: event.summary ?? '',
    start: timeOf(event.start),
    end: timeOf(event.end),
    updated: new Date(event.updated).toISOString(),
    ...(event.transparent ? { transparency: 'transparent' } : {}),
    ...event.wire,
  };
}

export class FakeCalendarApi {
  private changeLog = 0;
  private readonly calendars = new Map<string, Map<string, StoredEvent>>();
  private readonly syncTokens = new Map<string, { account: string; position: number; expired: boolean }>();
  private readonly pageCursors = new Map<string, PageCursor>();
  private pendingFailures = { count: 0, status: 503 };
  private lostWatchAnswers = 0;
  readonly switches: CalendarApiSwitches;

  constructor(
    private readonly tokens: GoogleTokenStore,
    private readonly clock: () => number,
    private readonly calls: FakeGoogleCall[],
  ) {
    this.switches = {
      eventsPageSize: DEFAULT_PAGE_SIZE,
      expireSyncTokens: () => {
        for (const token of this.syncTokens.values()) token.expired = true;
      },
      failNextApiCalls: (count, status = 503) => {
        if (!Number.isInteger(count) || count < 0) throw new RangeError('failNextApiCalls count must be a non-negative integer');
        if (status !== 429 && (status < 500 || status > 599)) throw new RangeError('failNextApiCalls status must be 429 or 5xx');
        this.pendingFailures = { count, status };
      },
      endlessPages: false,
      loseNextWatchAnswers: (count) => {
        if (!Number.isInteger(count) || count < 0) throw new RangeError('loseNextWatchAnswers count must be a non-negative integer');
        this.lostWatchAnswers = count;
      },
    };
  }

  calendar(account: string): FakeCalendar {
    const events = this.eventsOf(account);
    const record = (event: StoredEvent) => events.set(event.id, { ...event, updated: this.clock(), changedAt: ++this.changeLog });
    const existing = (id: string) => {
      const event = events.get(id);
      if (!event || event.status === 'cancelled') throw new Error(`no event ${id} in the calendar of ${account}`);
      return event;
    };
    return {
      add: (input) => {
        const id = randomBytes(13).toString('hex');
        record({ ...input, id, status: 'confirmed', updated: 0, changedAt: 0 });
        return id;
      },
      change: (id, changes) => record({ ...existing(id), ...changes }),
      remove: (id) => record({ ...existing(id), status: 'cancelled' }),
    };
  }

  /**
   * The Google account behind the request's bearer token and the call's log entry, or undefined once
   * the 401 (or a scripted failure) has been answered. Every Calendar endpoint starts here.
   */
  async authenticate(endpoint: CalendarEndpoint, request: FastifyRequest, reply: FastifyReply): Promise<{ account: string; call: FakeGoogleCall } | undefined> {
    const at = this.clock();
    if (this.pendingFailures.count > 0) {
      this.pendingFailures.count -= 1;
      const { status } = this.pendingFailures;
      this.calls.push({ endpoint, at, status });
      await reply.code(status).send(status === 429 ? googleApiError(429, 'rateLimitExceeded', 'Rate Limit Exceeded') : googleApiError(status, 'backendError', 'Backend Error'));
      return undefined;
    }
    const match = /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '');
    const state = match?.[1] === undefined ? undefined : this.tokens.accessTokenState(match[1]);
    const accessTokenExpired = state?.expired ?? false;
    if (!state || state.revoked || state.expired) {
      this.calls.push({ endpoint, at, status: 401, accessTokenExpired });
      await reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="https://accounts.google.com/", error="invalid_token"')
        .send({ error: { code: 401, message: 'Request had invalid authentication credentials.', status: 'UNAUTHENTICATED' } });
      return undefined;
    }
    const call: FakeGoogleCall = { endpoint, at, status: 200, accessTokenExpired };
    this.calls.push(call);
    return { account: state.account, call };
  }

  register(app: FastifyInstance): void {
    app.get('/calendar/v3/users/me/calendarList', async (request, reply) => {
      if ((await this.authenticate('calendarList', request, reply)) === undefined) return reply;
      return { kind: 'calendar#calendarList', items: [{ id: 'primary', summary: 'Primary' }] };
    });

    app.get<{ Params: { calendarId: string }; Querystring: Record<string, string | undefined> }>('/calendar/v3/calendars/:calendarId/events', async (request, reply) => {
      const caller = await this.authenticate('eventsList', request, reply);
      if (caller === undefined) return reply;
      const { account, call } = caller;
      const fail = (status: number, reason: string, message: string) => {
        call.status = status;
        return reply.code(status).send(googleApiError(status, reason, message));
      };
      if (request.params.calendarId !== 'primary') return fail(404, 'notFound', 'Not Found');
      const { pageToken, syncToken, showDeleted, maxResults } = request.query;
      let cursor: PageCursor | undefined;
      if (pageToken !== undefined) {
        cursor = this.pageCursors.get(pageToken);
        if (!cursor || cursor.account !== account) return fail(400, 'invalid', 'Invalid page token value.');
        this.pageCursors.delete(pageToken);
      } else if (syncToken !== undefined) {
        const since = this.syncTokens.get(syncToken);
        if (!since || since.expired || since.account !== account) return fail(410, 'fullSyncRequired', 'Sync token is no longer valid, a full sync is required.');
        cursor = this.firstPage(account, (event) => event.changedAt > since.position);
      } else {
        cursor = this.firstPage(account, (event) => showDeleted === 'true' || event.status !== 'cancelled');
      }
      const pageSize = Math.min(Number(maxResults ?? DEFAULT_PAGE_SIZE) || DEFAULT_PAGE_SIZE, this.switches.eventsPageSize);
      const items = cursor.items.slice(cursor.offset, cursor.offset + pageSize);
      const rest = { ...cursor, offset: cursor.offset + pageSize };
      const more = rest.offset < cursor.items.length || this.switches.endlessPages;
      const next = more ? { nextPageToken: this.remember(this.pageCursors, opaque('page-'), rest) } : { nextSyncToken: this.issueSyncToken(account, cursor.syncPosition) };
      return { kind: 'calendar#events', summary: 'Primary', timeZone: 'UTC', accessRole: 'owner', items, ...next };
    });
  }

  reset(): void {
    this.switches.eventsPageSize = DEFAULT_PAGE_SIZE;
    this.switches.endlessPages = false;
    this.pendingFailures = { count: 0, status: 503 };
    this.lostWatchAnswers = 0;
  }

  /** Whether this events.watch answer is to be lost (the loseNextWatchAnswers switch). */
  takeLostWatchAnswer(): boolean {
    if (this.lostWatchAnswers === 0) return false;
    this.lostWatchAnswers -= 1;
    return true;
  }

  private eventsOf(account: string): Map<string, StoredEvent> {
    let events = this.calendars.get(account);
    if (!events) this.calendars.set(account, (events = new Map()));
    return events;
  }

  private firstPage(account: string, listed: (event: StoredEvent) => boolean): PageCursor {
    const items = [...this.eventsOf(account).values()].filter(listed).sort((a, b) => a.changedAt - b.changedAt).map(wireEvent);
    return { account, items, offset: 0, syncPosition: this.changeLog };
  }

  private issueSyncToken(account: string, position: number): string {
    return this.remember(this.syncTokens, opaque('sync-'), { account, position, expired: false });
  }

  private remember<T>(map: Map<string, T>, key: string, value: T): string {
    map.set(key, value);
    return key;
  }
}
