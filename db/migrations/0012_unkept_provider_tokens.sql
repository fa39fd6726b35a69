-- Tokens a provider issued that no connection keeps: an authorization refused for a missing scope, one
-- that completed after its connection was disconnected, a grant that a re-consent replaced. Each waits
-- here, encrypted and bound to its row, until its revocation has had a final answer, so that a provider
-- outage or a worker crash between obtaining and revoking cannot leave a live grant behind.
CREATE TABLE unkept_provider_tokens (
  id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  connection_id        uuid NOT NULL REFERENCES integration_connections (id),
  provider             text NOT NULL,
  -- Whose grant the token belongs to, when the provider said: decides whether revoking it would end a grant that is kept.
  provider_account_id  text,
  token_enc            text NOT NULL,
  reason               text NOT NULL CHECK (reason IN ('insufficient_scope', 'disconnected_during_authorization', 'superseded_by_reconsent')),
  attempts             integer NOT NULL DEFAULT 0,
  last_error           text,
  created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX unkept_provider_tokens_connection_idx ON unkept_provider_tokens (connection_id, created_at);
