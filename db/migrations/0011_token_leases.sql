-- One writer of a connection's tokens across activity attempts. Temporal starts a retry when an
-- attempt times out, not when it stops, so the attempt that calls the provider holds this row's lease
-- (renewed by its heartbeats) and only the holder may store what the provider answered.
CREATE TABLE integration_token_leases (
  connection_id             uuid PRIMARY KEY REFERENCES integration_connections (id) ON DELETE CASCADE,
  holder                    text,
  expires_at                timestamptz,
  -- A provider call with this token version whose answer never reached the database (the attempt
  -- died or timed out mid-call): if the provider rotated, the refresh token we hold may be spent.
  unanswered_token_version  integer,
  unanswered_since          timestamptz
);
