import type { CommonQueryMethods } from 'slonik';
import { listListingMappings } from '../../db/queries/listing-mappings';
import { listReservations, upsertReservation, type ReservationRecord, type ReservationRow } from '../../db/queries/reservations';
import { readSyncCursor, storeSyncCursor, type SyncCounts } from '../../db/queries/sync';
import { MAX_PAGES, ReservationCursorGoneError, type AirbnbApi, type AirbnbReservation } from './airbnb-api';
import { mapListings } from './airbnb-listings';
import type { ConnectionContext, SyncRequest } from './features';
import { ProviderError } from './provider-error';

const PROVIDER = 'airbnb';
const CURSOR_RESOURCE = 'reservations';

type StoredBooking = Pick<ReservationRow, 'externalListingId' | 'status' | 'guestName' | 'checkIn' | 'checkOut'>;

interface ReservationChanges {
  reservations: AirbnbReservation[];
  cursor: string;
  /** Read from the beginning rather than from a cursor. */
  full: boolean;
}

/**
 * Brings the stored reservations in line with the host's: the ones changed since the stored cursor, or
 * all of them when there is none, the caller asks for it, or Airbnb answers 410. Every page is read
 * before anything is written; the reservations and the next cursor then commit together, so a sync that
 * fails halfway leaves the previous cursor for the next attempt. Reservations are upserted by their
 * confirmation code, so reading one twice never stores it twice.
 */
export async function syncReservations(api: AirbnbApi, context: ConnectionContext, request: SyncRequest): Promise<SyncCounts> {
  const connectionId = context.connection.id;
  const cursor = request.full ? null : await readSyncCursor(context.db, connectionId, CURSOR_RESOURCE);
  let changes: ReservationChanges;
  try {
    changes = await readChanges(api, context, cursor);
  } catch (error) {
    if (!(error instanceof ReservationCursorGoneError)) throw error;
    changes = await readChanges(api, context, null);
  }
  const mapped = new Set((await listListingMappings(context.db, connectionId)).map((mapping) => mapping.externalListingId));
  // A listing the host added since the connection was set up: map it before its reservations are stored.
  if (changes.reservations.some((reservation) => !mapped.has(reservation.listing_id))) await mapListings(api, context);
  return context.db.transaction((transaction) => applyChanges(transaction, connectionId, changes));
}

/** Pages until Airbnb says there is no more; the last page's cursor is where the next sync starts. */
async function readChanges(api: AirbnbApi, context: ConnectionContext, cursor: string | null): Promise<ReservationChanges> {
  const reservations: AirbnbReservation[] = [];
  let position = cursor;
  for (let page = 1; page <= MAX_PAGES; page++) {
    const answer = await api.listReservations(position);
    reservations.push(...answer.reservations);
    context.heartbeat(`reservations page ${page}`);
    position = answer.metadata.cursor;
    if (!answer.metadata.has_more) return { reservations, cursor: position, full: cursor === null };
  }
  throw new ProviderError('protocol', `Airbnb reservations read did not end within ${MAX_PAGES} pages`);
}

/** Counts what really changed against what was stored, so a full read of known reservations counts nothing. */
async function applyChanges(db: CommonQueryMethods, connectionId: string, changes: ReservationChanges): Promise<SyncCounts> {
  const counts: SyncCounts = { created: 0, updated: 0, deleted: 0, fullResync: changes.full };
  const stored = new Map<string, StoredBooking>((await listReservations(db, connectionId)).map((row) => [row.externalId, row]));
  for (const reservation of changes.reservations) {
    const record = reservationRecord(reservation);
    if ((await upsertReservation(db, connectionId, PROVIDER, record)) === 'unchanged') continue;
    const change = changeOf(stored.get(record.externalId), record);
    if (change) counts[change] += 1;
    stored.set(record.externalId, record);
  }
  await storeSyncCursor(db, connectionId, CURSOR_RESOURCE, changes.cursor);
  return counts;
}

/** A cancellation counts as a deletion: the booking no longer blocks the property. */
function changeOf(previous: StoredBooking | undefined, record: ReservationRecord): 'created' | 'updated' | 'deleted' | null {
  if (previous === undefined) return 'created';
  if (record.status === 'cancelled') return previous.status === 'cancelled' ? null : 'deleted';
  const same = previous.status === record.status && previous.externalListingId === record.externalListingId && previous.guestName === record.guestName
    && previous.checkIn === record.checkIn && previous.checkOut === record.checkOut;
  return same ? null : 'updated';
}

function reservationRecord(reservation: AirbnbReservation): ReservationRecord {
  return {
    externalId: reservation.confirmation_code,
    externalListingId: reservation.listing_id,
    // An altered reservation is still a booking, with the dates and guests it has now.
    status: reservation.status === 'cancelled' ? 'cancelled' : 'confirmed',
    guestName: reservation.guest?.first_name ?? null,
    checkIn: reservation.start_date,
    checkOut: reservation.end_date,
    providerUpdatedAt: new Date(reservation.updated_at),
  };
}
