import { sql, type CommonQueryMethods } from 'slonik';

/**
 * Records the Booking.com hotels a connection covers, not yet tied to a property. A mapping that
 * exists already (the user's choice above all) is left as it is.
 */
export async function addHotelMappings(db: CommonQueryMethods, connectionId: string, hotelIds: readonly string[]): Promise<void> {
  if (hotelIds.length === 0) return;
  await db.query(sql.unsafe`
    INSERT INTO listing_mappings (connection_id, external_listing_id, listing_name, mapped_by)
    SELECT ${connectionId}, hotel_id, 'Booking.com hotel ' || hotel_id, 'automatic'
    FROM unnest(${sql.array(hotelIds, 'text')}) AS hotel_id
    ON CONFLICT (connection_id, external_listing_id) DO NOTHING`);
}
