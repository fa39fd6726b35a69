import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/** One busy interval read from a provider calendar; all-day events run from midnight UTC to midnight UTC. */
export interface CalendarEvent {
  calendarId: string;
  externalId: string;
  title: string | null;
  startsAt: Date;
  endsAt: Date;
  allDay: boolean;
  providerUpdatedAt: Date | null;
}

/** Inserts or replaces an event; answers whether it was new, for the sync run's counts. */
export async function upsertCalendarEvent(db: CommonQueryMethods, connectionId: string, event: CalendarEvent): Promise<'created' | 'updated'> {
  const inserted = await db.oneFirst(sql.type(z.object({ inserted: z.boolean() }))`
    INSERT INTO calendar_events (connection_id, calendar_id, external_id, title, starts_at, ends_at, all_day, provider_updated_at)
    VALUES (${connectionId}, ${event.calendarId}, ${event.externalId}, ${event.title}, ${sql.timestamp(event.startsAt)},
            ${sql.timestamp(event.endsAt)}, ${event.allDay}, ${event.providerUpdatedAt ? sql.timestamp(event.providerUpdatedAt) : null})
    ON CONFLICT (connection_id, calendar_id, external_id) DO UPDATE SET
      title = EXCLUDED.title, starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at, all_day = EXCLUDED.all_day,
      provider_updated_at = EXCLUDED.provider_updated_at, synced_at = now()
    RETURNING xmax = 0 AS inserted`);
  return inserted ? 'created' : 'updated';
}

export async function deleteCalendarEvent(db: CommonQueryMethods, connectionId: string, calendarId: string, externalId: string): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    DELETE FROM calendar_events WHERE connection_id = ${connectionId} AND calendar_id = ${calendarId} AND external_id = ${externalId}`);
  return result.rowCount === 1;
}

/** A full resync starts from nothing: what the provider no longer lists must not keep blocking dates. */
export async function deleteCalendarEvents(db: CommonQueryMethods, connectionId: string, calendarId?: string): Promise<number> {
  const result = await db.query(sql.unsafe`
    DELETE FROM calendar_events WHERE connection_id = ${connectionId} ${calendarId === undefined ? sql.fragment`` : sql.fragment`AND calendar_id = ${calendarId}`}`);
  return result.rowCount;
}

export function listCalendarEvents(db: CommonQueryMethods, connectionId: string) {
  return db.any(sql.type(
    z.object({ calendarId: z.string(), externalId: z.string(), title: z.string().nullable(), startsAt: z.number(), endsAt: z.number(), allDay: z.boolean() }),
  )`
    SELECT calendar_id AS "calendarId", external_id AS "externalId", title, starts_at AS "startsAt", ends_at AS "endsAt", all_day AS "allDay"
    FROM calendar_events WHERE connection_id = ${connectionId} ORDER BY starts_at, external_id`);
}

/** The dates a property is blocked on, as YYYY-MM-DD, from every live calendar connection of its owner. */
export function blockedDates(db: CommonQueryMethods, propertyId: string): Promise<readonly string[]> {
  return db.anyFirst(sql.type(z.object({ day: z.string() }))`
    SELECT DISTINCT to_char(blocked_on, 'YYYY-MM-DD') AS day FROM property_blocked_dates WHERE property_id = ${propertyId} ORDER BY day`);
}
