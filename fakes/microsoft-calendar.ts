// Outlook calendars of the fake Microsoft Graph (fakes/microsoft-graph.ts): events and calendarView delta. No HTTP here.
import { randomBytes } from 'node:crypto';

export interface FakeEventInput {
  subject: string;
  /** ISO instants; all-day events from midnight UTC to midnight UTC. */
  start: string;
  end: string;
  isAllDay?: boolean;
  isCancelled?: boolean;
  showAs?: 'free' | 'tentative' | 'busy' | 'oof' | 'workingElsewhere';
}

interface EventRecord extends Required<FakeEventInput> {
  id: string;
  /** The change sequence number of the last change; delta reads return what changed after theirs. */
  version: number;
  lastModified: number;
  deleted: boolean;
}

/** What a delta link or next link stands for: which changes, in which window, from where on. */
export interface DeltaState {
  oid: string;
  generation: number;
  start: number;
  end: number;
  /** Changes after `since` and up to `upto` belong to this read; 0 = the first read of the window. */
  since: number;
  upto: number;
  offset: number;
}

export type DeltaItem = { id: string; '@removed': { reason: 'deleted' | 'changed' } } | Record<string, unknown>;

function graphDateTime(instant: number): { dateTime: string; timeZone: string } {
  // Graph writes seven fractional digits and no offset; the zone travels beside it.
  return { dateTime: `${new Date(instant).toISOString().slice(0, -1)}0000`, timeZone: 'UTC' };
}

function etagOf(version: number): string {
  return `W/"${Buffer.from(`version-${version}`).toString('base64')}"`;
}

export class FakeCalendars {
  private readonly mailboxes = new Map<string, Map<string, EventRecord>>();
  private sequence = 0;
  /** Raised by `forgetDeltaTokens`: links of an older generation get 410 Gone. */
  generation = 1;

  constructor(private readonly clock: () => number) {}

  addEvent(oid: string, input: FakeEventInput): string {
    const id = `AAMkAG${randomBytes(24).toString('base64url')}`;
    this.store(oid, { isAllDay: false, isCancelled: false, showAs: 'busy', ...input, id, version: 0, lastModified: 0, deleted: false });
    return id;
  }

  updateEvent(oid: string, id: string, change: Partial<FakeEventInput>): void {
    const event = this.find(oid, id);
    this.store(oid, { ...event, ...change });
  }

  deleteEvent(oid: string, id: string): void {
    this.store(oid, { ...this.find(oid, id), deleted: true });
  }

  liveEvents(oid: string): Array<{ id: string } & FakeEventInput> {
    return [...(this.mailboxes.get(oid)?.values() ?? [])]
      .filter((event) => !event.deleted)
      .map(({ id, subject, start, end, isAllDay, isCancelled, showAs }) => ({ id, subject, start, end, isAllDay, isCancelled, showAs }));
  }

  /** The event's current etag, which Graph also puts in the change notifications about it. */
  etag(oid: string, id: string): string | undefined {
    const event = this.mailboxes.get(oid)?.get(id);
    return event ? etagOf(event.version) : undefined;
  }

  forgetDeltaTokens(): void {
    this.generation += 1;
  }

  startDelta(oid: string, start: number, end: number): DeltaState {
    return { oid, generation: this.generation, start, end, since: 0, upto: this.sequence, offset: 0 };
  }

  /** The state a delta link hands on: the next read picks up what changes after this one. */
  continueDelta(previous: DeltaState): DeltaState {
    return { ...previous, since: previous.upto, upto: this.sequence, offset: 0 };
  }

  /** One page of a delta read, and the state of the next page if there is one. */
  page(state: DeltaState, size: number): { items: DeltaItem[]; next?: DeltaState } {
    const events = [...(this.mailboxes.get(state.oid)?.values() ?? [])]
      .filter((event) => event.version > state.since && event.version <= state.upto)
      .sort((a, b) => a.version - b.version);
    const inWindow = (event: EventRecord) => !event.deleted && Date.parse(event.start) < state.end && Date.parse(event.end) > state.start;
    // The first read lists what is there; later reads also say what left (deleted, or moved out of the window).
    const relevant = state.since === 0 ? events.filter(inWindow) : events;
    const items = relevant.slice(state.offset, state.offset + size).map((event): DeltaItem => {
      if (inWindow(event)) return this.describe(event);
      return { id: event.id, '@removed': { reason: event.deleted ? 'deleted' : 'changed' } };
    });
    const more = state.offset + size < relevant.length;
    return { items, ...(more ? { next: { ...state, offset: state.offset + size } } : {}) };
  }

  private describe(event: EventRecord): Record<string, unknown> {
    return {
      '@odata.etag': etagOf(event.version),
      id: event.id,
      subject: event.subject,
      isAllDay: event.isAllDay,
      isCancelled: event.isCancelled,
      showAs: event.showAs,
      start: graphDateTime(Date.parse(event.start)),
      end: graphDateTime(Date.parse(event.end)),
      lastModifiedDateTime: new Date(event.lastModified).toISOString(),
    };
  }

  private find(oid: string, id: string): EventRecord {
    const event = this.mailboxes.get(oid)?.get(id);
    if (!event || event.deleted) throw new Error(`no event ${id} in the calendar of ${oid}`);
    return event;
  }

  private store(oid: string, event: EventRecord): void {
    if (!this.mailboxes.has(oid)) this.mailboxes.set(oid, new Map());
    this.sequence += 1;
    this.mailboxes.get(oid)!.set(event.id, { ...event, version: this.sequence, lastModified: this.clock() });
  }
}
