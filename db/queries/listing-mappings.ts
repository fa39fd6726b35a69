import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/**
 * Which property a provider's listing (an Airbnb listing, a Booking.com hotel) stands for, per
 * connection. `mapped_by = 'user'` marks a choice the user made: automatic mapping never overwrites it.
 */
const mappingRow = z.object({
  connectionId: z.string().uuid(),
  externalListingId: z.string(),
  listingName: z.string(),
  propertyId: z.string().uuid().nullable(),
  propertyName: z.string().nullable(),
  mappedBy: z.enum(['automatic', 'user']),
  updatedAt: z.number(),
});
export type ListingMappingRow = z.infer<typeof mappingRow>;

const MAPPING_COLUMNS = sql.fragment`
  m.connection_id AS "connectionId", m.external_listing_id AS "externalListingId", m.listing_name AS "listingName",
  m.property_id AS "propertyId", p.name AS "propertyName", m.mapped_by AS "mappedBy", m.updated_at AS "updatedAt"`;

export function listListingMappings(db: CommonQueryMethods, connectionId: string): Promise<readonly ListingMappingRow[]> {
  return db.any(sql.type(mappingRow)`
    SELECT ${MAPPING_COLUMNS} FROM listing_mappings m LEFT JOIN properties p ON p.id = m.property_id
    WHERE m.connection_id = ${connectionId} ORDER BY m.listing_name, m.external_listing_id`);
}

export function findListingMapping(db: CommonQueryMethods, connectionId: string, externalListingId: string): Promise<ListingMappingRow | null> {
  return db.maybeOne(sql.type(mappingRow)`
    SELECT ${MAPPING_COLUMNS} FROM listing_mappings m LEFT JOIN properties p ON p.id = m.property_id
    WHERE m.connection_id = ${connectionId} AND m.external_listing_id = ${externalListingId}`);
}

/**
 * Records a listing as the provider names it, mapped to `propertyId` (null: unmapped) unless the user
 * chose its property: then only the name follows the provider. Answers the property it is mapped to now.
 */
export function upsertAutomaticListingMapping(
  db: CommonQueryMethods,
  connectionId: string,
  listing: { externalListingId: string; listingName: string; propertyId: string | null },
): Promise<string | null> {
  return db.oneFirst(sql.type(z.object({ propertyId: z.string().uuid().nullable() }))`
    INSERT INTO listing_mappings (connection_id, external_listing_id, listing_name, property_id, mapped_by)
    VALUES (${connectionId}, ${listing.externalListingId}, ${listing.listingName}, ${listing.propertyId}, 'automatic')
    ON CONFLICT (connection_id, external_listing_id) DO UPDATE SET
      listing_name = EXCLUDED.listing_name,
      property_id = CASE WHEN listing_mappings.mapped_by = 'user' THEN listing_mappings.property_id ELSE EXCLUDED.property_id END,
      updated_at = now()
    RETURNING property_id AS "propertyId"`);
}

/** The user's choice for one listing; null when the connection has no such listing, else the property it replaced. */
export function setUserListingMapping(
  db: CommonQueryMethods,
  connectionId: string,
  externalListingId: string,
  propertyId: string | null,
): Promise<{ previousPropertyId: string | null } | null> {
  return db.maybeOne(sql.type(z.object({ previousPropertyId: z.string().uuid().nullable() }))`
    UPDATE listing_mappings m SET property_id = ${propertyId}, mapped_by = 'user', updated_at = now()
    FROM (SELECT property_id FROM listing_mappings
          WHERE connection_id = ${connectionId} AND external_listing_id = ${externalListingId} FOR UPDATE) previous
    WHERE m.connection_id = ${connectionId} AND m.external_listing_id = ${externalListingId}
    RETURNING previous.property_id AS "previousPropertyId"`);
}

/** Moves the stored reservations of one listing to the property it is mapped to now; answers how many moved. */
export async function remapListingReservations(db: CommonQueryMethods, connectionId: string, externalListingId: string): Promise<number> {
  const result = await db.query(sql.unsafe`
    UPDATE reservations r SET property_id = m.property_id, updated_at = now()
    FROM listing_mappings m
    WHERE m.connection_id = r.connection_id AND m.external_listing_id = r.external_listing_id
      AND r.connection_id = ${connectionId} AND r.external_listing_id = ${externalListingId}
      AND r.property_id IS DISTINCT FROM m.property_id`);
  return result.rowCount;
}

/** The provider's connections that are not over yet and cover the listing (webhooks that name only a listing). */
export function liveConnectionsWithListing(
  db: CommonQueryMethods,
  provider: string,
  externalListingId: string,
): Promise<readonly { id: string; workflowId: string }[]> {
  return db.any(sql.type(z.object({ id: z.string().uuid(), workflowId: z.string() }))`
    SELECT c.id, c.workflow_id AS "workflowId"
    FROM listing_mappings m JOIN integration_connections c ON c.id = m.connection_id
    WHERE c.provider = ${provider} AND m.external_listing_id = ${externalListingId}
      AND c.status IN ('pending', 'active', 'needs_reauth')
    ORDER BY c.created_at`);
}
