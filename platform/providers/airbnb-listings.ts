import {
  findListingMapping,
  remapListingReservations,
  upsertAutomaticListingMapping,
} from '../../db/queries/listing-mappings';
import { listUserProperties, type PropertyRow } from '../../db/queries/properties';
import { MAX_PAGES, type AirbnbApi, type AirbnbListing } from './airbnb-api';
import type { ConnectionContext } from './features';
import { ProviderError } from './provider-error';

/**
 * Records every listing of the host with the property it stands for: the user's property of the same
 * name when exactly one has it, else none until the user chooses (the listings endpoint). A choice the
 * user made is never overwritten. Reservations already stored follow their listing's mapping.
 */
export async function mapListings(api: AirbnbApi, context: ConnectionContext): Promise<void> {
  const { db, connection } = context;
  const listings = await readAllListings(api, context);
  const properties = await listUserProperties(db, connection.userId);
  for (const listing of listings) {
    await db.transaction(async (transaction) => {
      const before = await findListingMapping(transaction, connection.id, listing.id);
      const propertyId = await upsertAutomaticListingMapping(transaction, connection.id, {
        externalListingId: listing.id,
        listingName: listing.name,
        propertyId: propertyNamed(properties, listing.name),
      });
      if (before !== null && before.propertyId === propertyId) return;
      // Reservations of a listing seen first in a sync were stored before the listing had a mapping.
      const remappedReservations = await remapListingReservations(transaction, connection.id, listing.id);
      await context.audit.record(
        {
          action: 'ListingMappingChange',
          outcome: 'success',
          actor: { type: 'system' },
          userId: connection.userId,
          provider: connection.provider,
          connectionId: connection.id,
          details: { listingId: listing.id, propertyId, previousPropertyId: before?.propertyId ?? null, mappedBy: 'automatic', remappedReservations },
        },
        transaction,
      );
    });
  }
}

async function readAllListings(api: AirbnbApi, context: ConnectionContext): Promise<AirbnbListing[]> {
  const listings: AirbnbListing[] = [];
  let offset = 0;
  for (let page = 1; page <= MAX_PAGES; page++) {
    const answer = await api.listListings(offset);
    listings.push(...answer.listings);
    context.heartbeat(`listings page ${page}`);
    if (answer.nextOffset === null) return listings;
    offset = answer.nextOffset;
  }
  throw new ProviderError('protocol', `Airbnb listings read did not end within ${MAX_PAGES} pages`);
}

/** A name shared by two properties says nothing about which one is meant: such listings stay unmapped. */
function propertyNamed(properties: readonly PropertyRow[], listingName: string): string | null {
  const key = comparable(listingName);
  const matches = properties.filter((property) => comparable(property.name) === key);
  return matches.length === 1 ? matches[0]!.id : null;
}

function comparable(name: string): string {
  return name.trim().toLocaleLowerCase('en');
}
