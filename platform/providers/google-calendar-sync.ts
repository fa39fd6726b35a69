import { log } from '@temporalio/activity';
import type { CommonQueryMethods } from 'slonik';
import {
  deleteCalendarEvent,
  deleteCalendarEvents,
  listCalendarEvents,
  upsertCalendarEvent,
  type CalendarEvent,
} from '../../db/queries/calendar-events';
import { dropSyncCursor, readSyncCursor, storeSyncCursor, type SyncCounts } from '../../db/queries/sync';
import type { ConnectionContext, SyncRequest } from './features';
import { SyncTokenGoneError, type GoogleCalendarApi, type GoogleCalendarEvent } from './google-calendar-api';
import { WATCHED_CALENDAR } from './google-calendar-channels';
import { ProviderError } from './provider-error';

const CURSOR_RESOURCE = `calendars/${WATCHED_CALENDAR}/events`;
/** 1000 pages of 250 events are far beyond any calendar: more means Google keeps naming a next page. */
const MAX_PAGES = 1000;

interface CalendarChanges {
  /** Each listed event with the time it keeps the user busy (null: none, or deleted). */
  events: Array<{ id: string; busy: CalendarEvent | null }>;
  nextSyncToken: string;
}

/**
 * Brings calendar_events in line with the user's primary calendar: the changes since the stored sync
 * token, or everything when there is none, the caller asks for it, or Google answers 410. Every page is
 * read before anything is written; the changes and the next sync token then commit together, so a sync
 * that fails halfway leaves the previous state and token for the next attempt.
 */
export async function syncPrimaryCalendar(api: GoogleCalendarApi, context: ConnectionContext, request: SyncRequest): Promise<SyncCounts> {
  const connectionId = context.connection.id;
  const syncToken = request.full ? null : await readSyncCursor(context.db, connectionId, CURSOR_RESOURCE);
  if (syncToken !== null) {
    try {
      const changes = await readChanges(api, context, syncToken);
      return await context.db.transaction((transaction) => applyChanges(transaction, connectionId, changes));
    } catch (error) {
      if (!(error instanceof SyncTokenGoneError)) throw error;
      await dropSyncCursor(context.db, connectionId, CURSOR_RESOURCE);
    }
  }
  const everything = await readChanges(api, context, null);
  return context.db.transaction((transaction) => replaceAll(transaction, connectionId, everything));
}

/** Pages until Google hands out the next sync token, which only the last page carries. */
async function readChanges(api: GoogleCalendarApi, context: ConnectionContext, syncToken: string | null): Promise<CalendarChanges> {
  const events: CalendarChanges['events'] = [];
  let pageToken: string | undefined;
  for (let page = 1; page <= MAX_PAGES; page++) {
    const answer = await api.listEvents(WATCHED_CALENDAR, { ...(syncToken === null ? {} : { syncToken }), ...(pageToken === undefined ? {} : { pageToken }) });
    const odd = [...answer.unreadable];
    for (const event of answer.items) {
      const busy = busyInterval(event);
      if (busy === undefined) odd.push(event.id);
      else events.push({ id: event.id, busy });
    }
    // One odd event must not hold back every other change and the sync token: it is left out, named by id only (titles are the user's).
    for (const eventId of odd) log.warn('Google Calendar event skipped: it is not an event with a readable start and end', { connectionId: context.connection.id, eventId });
    context.heartbeat(`events.list page ${page}`);
    if (answer.nextPageToken !== undefined) pageToken = answer.nextPageToken;
    else if (answer.nextSyncToken !== undefined) return { events, nextSyncToken: answer.nextSyncToken };
    else throw new ProviderError('protocol', 'Google Calendar events.list ended without a nextSyncToken');
  }
  throw new ProviderError('protocol', `Google Calendar events.list did not end within ${MAX_PAGES} pages`);
}

async function applyChanges(db: CommonQueryMethods, connectionId: string, changes: CalendarChanges): Promise<SyncCounts> {
  const counts: SyncCounts = { created: 0, updated: 0, deleted: 0, fullResync: false };
  for (const { id, busy } of changes.events) {
    if (busy) counts[await upsertCalendarEvent(db, connectionId, busy)] += 1;
    else if (await deleteCalendarEvent(db, connectionId, WATCHED_CALENDAR, id)) counts.deleted += 1;
  }
  await storeSyncCursor(db, connectionId, CURSOR_RESOURCE, changes.nextSyncToken);
  return counts;
}

/** A full read replaces what was stored; the counts still say what changed against it. */
async function replaceAll(db: CommonQueryMethods, connectionId: string, everything: CalendarChanges): Promise<SyncCounts> {
  const stored = new Set((await listCalendarEvents(db, connectionId)).filter((event) => event.calendarId === WATCHED_CALENDAR).map((event) => event.externalId));
  await deleteCalendarEvents(db, connectionId, WATCHED_CALENDAR);
  const listed = new Set<string>();
  for (const { id, busy } of everything.events) {
    if (!busy) continue;
    await upsertCalendarEvent(db, connectionId, busy);
    listed.add(id);
  }
  await storeSyncCursor(db, connectionId, CURSOR_RESOURCE, everything.nextSyncToken);
  const kept = [...listed].filter((id) => stored.has(id)).length;
  return { created: listed.size - kept, updated: kept, deleted: stored.size - kept, fullResync: true };
}

/**
 * The time an event keeps the user busy, null when it does not (cancelled, marked free), or undefined
 * when its times cannot be read. All-day events run from midnight UTC of their first day to midnight
 * UTC after their last (`end.date` is exclusive).
 */
function busyInterval(event: GoogleCalendarEvent): CalendarEvent | null | undefined {
  if (event.status === 'cancelled' || event.transparency === 'transparent') return null;
  const firstDay = event.start?.date;
  const allDay = firstDay !== undefined;
  const startsAt = new Date((allDay ? `${firstDay}T00:00:00Z` : event.start?.dateTime) ?? Number.NaN);
  const endsAt = new Date((allDay ? event.end?.date && `${event.end.date}T00:00:00Z` : event.end?.dateTime) ?? Number.NaN);
  if (Number.isNaN(startsAt.getTime()) || Number.isNaN(endsAt.getTime()) || endsAt < startsAt) return undefined;
  return {
    calendarId: WATCHED_CALENDAR,
    externalId: event.id,
    title: event.summary ?? null,
    startsAt,
    endsAt,
    allDay,
    providerUpdatedAt: event.updated ? new Date(event.updated) : null,
  };
}
