-- What connections bring in and how they are watched: the PM app's properties, the mapping of a
-- provider's listings to them, synced calendar events and reservations, sync cursors and runs, and the
-- webhook deliveries already handled (providers deliver at least once).

CREATE TABLE properties (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner_user_id  uuid NOT NULL REFERENCES users (id),
  name           text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX properties_owner_idx ON properties (owner_user_id);

-- A listing on Airbnb (or a hotel on Booking.com) and the property it stands for. A mapping the user
-- chose is never overwritten by a later automatic one.
CREATE TABLE listing_mappings (
  connection_id        uuid NOT NULL REFERENCES integration_connections (id),
  external_listing_id  text NOT NULL,
  listing_name         text NOT NULL,
  property_id          uuid REFERENCES properties (id),
  mapped_by            text NOT NULL CHECK (mapped_by IN ('automatic', 'user')),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (connection_id, external_listing_id)
);

-- Busy time from a connected calendar. Deleted with the grant on disconnect: a calendar we can no
-- longer read must not keep blocking dates.
CREATE TABLE calendar_events (
  connection_id        uuid NOT NULL REFERENCES integration_connections (id),
  calendar_id          text NOT NULL,
  external_id          text NOT NULL,
  title                text,
  starts_at            timestamptz NOT NULL,
  ends_at              timestamptz NOT NULL,
  all_day              boolean NOT NULL,
  provider_updated_at  timestamptz,
  synced_at            timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (connection_id, calendar_id, external_id),
  CHECK (ends_at >= starts_at)
);

-- Every day (UTC) an event of a live calendar connection touches blocks each of its owner's properties.
CREATE VIEW property_blocked_dates AS
  SELECT p.id AS property_id, day::date AS blocked_on, e.connection_id, e.calendar_id, e.external_id AS event_id
  FROM calendar_events e
  JOIN integration_connections c ON c.id = e.connection_id AND c.status NOT IN ('disconnected', 'failed')
  JOIN properties p ON p.owner_user_id = c.user_id
  CROSS JOIN LATERAL generate_series(
    (e.starts_at AT TIME ZONE 'UTC')::date,
    -- An end at midnight (all-day events end the next day, exclusive) does not block that day.
    GREATEST((e.starts_at AT TIME ZONE 'UTC')::date, ((e.ends_at - interval '1 microsecond') AT TIME ZONE 'UTC')::date),
    interval '1 day'
  ) AS day;

CREATE TABLE reservations (
  id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  connection_id        uuid NOT NULL REFERENCES integration_connections (id),
  provider             text NOT NULL,
  external_id          text NOT NULL,
  external_listing_id  text NOT NULL,
  property_id          uuid REFERENCES properties (id),
  status               text NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
  guest_name           text,
  check_in             date NOT NULL,
  check_out            date NOT NULL,
  provider_updated_at  timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  UNIQUE (provider, external_id),
  CHECK (check_out >= check_in)
);
CREATE INDEX reservations_property_idx ON reservations (property_id, check_in);
CREATE INDEX reservations_connection_idx ON reservations (connection_id);

-- Where the next incremental sync of one resource starts (Google syncToken, Microsoft deltaLink).
CREATE TABLE sync_cursors (
  connection_id  uuid NOT NULL REFERENCES integration_connections (id),
  resource       text NOT NULL,
  cursor         text NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (connection_id, resource)
);

CREATE TABLE sync_runs (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  connection_id   uuid NOT NULL REFERENCES integration_connections (id),
  reason          text NOT NULL,
  started_at      timestamptz NOT NULL,
  finished_at     timestamptz,
  outcome         text CHECK (outcome IN ('succeeded', 'failed')),
  full_resync     boolean NOT NULL DEFAULT false,
  created_count   integer NOT NULL DEFAULT 0,
  updated_count   integer NOT NULL DEFAULT 0,
  deleted_count   integer NOT NULL DEFAULT 0,
  error_kind      text,
  error_message   text
);
CREATE INDEX sync_runs_connection_idx ON sync_runs (connection_id, started_at DESC);

-- Deliveries already handed to a workflow (or RISC tokens already applied, by jti): a repeat does nothing.
CREATE TABLE webhook_deliveries (
  provider       text NOT NULL,
  delivery_id    text NOT NULL,
  connection_id  uuid,
  received_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, delivery_id)
);

ALTER TABLE webhook_subscriptions ADD COLUMN renewed_at timestamptz;
ALTER TABLE integration_connections ADD COLUMN provider_account_id text;
