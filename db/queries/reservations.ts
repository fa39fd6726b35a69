import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/** A reservation as a provider reports it; `externalListingId` is mapped to a property through listing_mappings. */
export interface ReservationRecord {
  externalId: string;
  externalListingId: string;
  status: 'confirmed' | 'cancelled';
  guestName: string | null;
  checkIn: string;
  checkOut: string;
  providerUpdatedAt: Date | null;
}

const reservationRow = z.object({
  id: z.string().uuid(),
  connectionId: z.string().uuid(),
  provider: z.string(),
  externalId: z.string(),
  externalListingId: z.string(),
  propertyId: z.string().uuid().nullable(),
  status: z.enum(['confirmed', 'cancelled']),
  guestName: z.string().nullable(),
  checkIn: z.string(),
  checkOut: z.string(),
});
export type ReservationRow = z.infer<typeof reservationRow>;

/**
 * Upserts by the provider's id. A report older than what is stored changes nothing, so a late
 * redelivery cannot undo a cancellation; nor does one through a second live connection to the same
 * provider account. Answers what happened, for the sync run's counts.
 */
export async function upsertReservation(
  db: CommonQueryMethods,
  connectionId: string,
  provider: string,
  reservation: ReservationRecord,
): Promise<'created' | 'updated' | 'unchanged'> {
  const updatedAt = reservation.providerUpdatedAt ? sql.timestamp(reservation.providerUpdatedAt) : null;
  const outcome = await db.maybeOneFirst(sql.type(z.object({ inserted: z.boolean() }))`
    INSERT INTO reservations (connection_id, provider, external_id, external_listing_id, property_id, status, guest_name, check_in, check_out, provider_updated_at)
    VALUES (
      ${connectionId}, ${provider}, ${reservation.externalId}, ${reservation.externalListingId},
      (SELECT property_id FROM listing_mappings WHERE connection_id = ${connectionId} AND external_listing_id = ${reservation.externalListingId}),
      ${reservation.status}, ${reservation.guestName}, ${reservation.checkIn}::date, ${reservation.checkOut}::date, ${updatedAt})
    ON CONFLICT (provider, external_id) DO UPDATE SET
      connection_id = EXCLUDED.connection_id, external_listing_id = EXCLUDED.external_listing_id, property_id = EXCLUDED.property_id,
      status = EXCLUDED.status, guest_name = EXCLUDED.guest_name, check_in = EXCLUDED.check_in, check_out = EXCLUDED.check_out,
      provider_updated_at = EXCLUDED.provider_updated_at, updated_at = now()
    WHERE (reservations.provider_updated_at IS NULL OR EXCLUDED.provider_updated_at IS NULL
           OR EXCLUDED.provider_updated_at >= reservations.provider_updated_at)
      -- Two users connecting one provider account see the same reservations; the first keeps them
      -- until its connection ends, instead of the two moving them back and forth on every sync.
      AND (reservations.connection_id = EXCLUDED.connection_id
           OR NOT EXISTS (SELECT 1 FROM integration_connections owner
                          WHERE owner.id = reservations.connection_id AND owner.status NOT IN ('disconnected', 'failed')))
    RETURNING xmax = 0 AS inserted`);
  if (outcome === null) return 'unchanged';
  return outcome ? 'created' : 'updated';
}

export function listReservations(db: CommonQueryMethods, connectionId: string): Promise<readonly ReservationRow[]> {
  return db.any(sql.type(reservationRow)`
    SELECT id, connection_id AS "connectionId", provider, external_id AS "externalId", external_listing_id AS "externalListingId",
           property_id AS "propertyId", status, guest_name AS "guestName",
           to_char(check_in, 'YYYY-MM-DD') AS "checkIn", to_char(check_out, 'YYYY-MM-DD') AS "checkOut"
    FROM reservations WHERE connection_id = ${connectionId} ORDER BY check_in, external_id`);
}
