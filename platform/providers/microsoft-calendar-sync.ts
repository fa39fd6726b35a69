import { z } from 'zod';
import { deleteCalendarEvent, listCalendarEvents, upsertCalendarEvent } from '../../db/queries/calendar-events';
import { readSyncCursor, storeSyncCursor, type SyncCounts } from '../../db/queries/sync';
import type { ConnectionContext, SyncRequest } from './features';
import type { GraphEventChange, MicrosoftGraphClient } from './microsoft-graph';
import { ProviderError } from './provider-error';

const DAY_MS = 24 * 3600 * 1000;
const CURSOR_RESOURCE = 'calendarView';
/** Outlook has no notion of a primary calendar id; calendarView reads the user's default calendar. */
const CALENDAR_ID = 'default';
/** The window of events that can block dates: recent past (stays that are still going on) to a year ahead. */
const WINDOW_PAST_DAYS = 30;
const WINDOW_FUTURE_DAYS = 365;
/** A delta link keeps the window of the read that made it, so the window is moved with a full read weekly. */
const WINDOW_MAX_AGE_MS = 7 * DAY_MS;
/** Far beyond any real calendar in the window: a loop of links is a provider fault, not a long calendar. */
const MAX_PAGES = 1000;

/** The stored cursor: Graph's deltaLink and when the full read that chose its window ran. */
const storedCursor = z.object({ deltaLink: z.string().url(), fullReadAt: z.number() });
type StoredCursor = z.infer<typeof storedCursor>;

interface DeltaRead {
  changes: GraphEventChange[];
  deltaLink: string;
}

/**
 * Incremental sync of the user's Outlook calendar into calendar_events through calendarView/delta:
 * page to the end, store the deltaLink, and start again from nothing when Graph no longer knows it.
 * What a run read is written in one transaction, so a run that fails half-way changes nothing.
 */
export async function syncOutlookCalendar(graph: MicrosoftGraphClient, context: ConnectionContext, request: SyncRequest): Promise<SyncCounts> {
  const { connection, db } = context;
  const now = context.clock().getTime();
  const stored = request.full ? null : parseCursor(await readSyncCursor(db, connection.id, CURSOR_RESOURCE));
  const cursor = stored && now - stored.fullReadAt < WINDOW_MAX_AGE_MS ? stored : null;

  let fullReadAt = cursor?.fullReadAt ?? now;
  let read = cursor ? await readDelta(graph, context, cursor.deltaLink) : 'sync_state_gone';
  const full = read === 'sync_state_gone';
  if (read === 'sync_state_gone') {
    fullReadAt = now;
    read = await readDelta(graph, context, graph.calendarDeltaUrl({ start: new Date(now - WINDOW_PAST_DAYS * DAY_MS), end: new Date(now + WINDOW_FUTURE_DAYS * DAY_MS) }));
    if (read === 'sync_state_gone') throw new ProviderError('protocol', 'Microsoft Graph refused a fresh delta read as out of sync');
  }
  const delta: DeltaRead = read;

  return db.transaction(async (transaction) => {
    const counts: SyncCounts = { created: 0, updated: 0, deleted: 0, fullResync: full };
    const latest = new Map(delta.changes.map((change) => [change.id, change]));
    for (const change of latest.values()) {
      if (change.removed || !change.blocksTime) {
        if (await deleteCalendarEvent(transaction, connection.id, CALENDAR_ID, change.id)) counts.deleted += 1;
        continue;
      }
      const outcome = await upsertCalendarEvent(transaction, connection.id, {
        calendarId: CALENDAR_ID,
        externalId: change.id,
        title: change.title,
        startsAt: change.startsAt,
        endsAt: change.endsAt,
        allDay: change.allDay,
        providerUpdatedAt: change.updatedAt,
      });
      counts[outcome] += 1;
    }
    if (full) {
      // A full read lists everything there is: what it did not list is gone.
      for (const stored of await listCalendarEvents(transaction, connection.id)) {
        if (stored.calendarId === CALENDAR_ID && !latest.has(stored.externalId)) {
          await deleteCalendarEvent(transaction, connection.id, CALENDAR_ID, stored.externalId);
          counts.deleted += 1;
        }
      }
    }
    const next: StoredCursor = { deltaLink: delta.deltaLink, fullReadAt };
    await storeSyncCursor(transaction, connection.id, CURSOR_RESOURCE, JSON.stringify(next));
    return counts;
  });
}

async function readDelta(graph: MicrosoftGraphClient, context: ConnectionContext, startUrl: string): Promise<DeltaRead | 'sync_state_gone'> {
  const changes: GraphEventChange[] = [];
  let url = startUrl;
  for (let pages = 1; pages <= MAX_PAGES; pages++) {
    const page = await graph.readDeltaPage(context.accessToken, url);
    if (page === 'sync_state_gone') return page;
    changes.push(...page.changes);
    context.heartbeat(`delta page ${pages}`);
    if (page.deltaLink) return { changes, deltaLink: page.deltaLink };
    if (!page.nextLink) throw new ProviderError('protocol', 'Microsoft Graph ended a delta read without a deltaLink');
    url = page.nextLink;
  }
  throw new ProviderError('protocol', `Microsoft Graph delta read did not end within ${MAX_PAGES} pages`);
}

/** A cursor we cannot read (an older format, a damaged row) costs one full read, nothing more. */
function parseCursor(text: string | null): StoredCursor | null {
  if (text === null) return null;
  try {
    const parsed = storedCursor.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
