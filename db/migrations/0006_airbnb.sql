-- Airbnb webhook events that name only a listing find its connection through the mapping; the primary
-- key leads with the connection, so the listing needs an index of its own.
CREATE INDEX listing_mappings_external_listing_idx ON listing_mappings (external_listing_id);
