-- Users of the PM app, their sessions, the connections they make to external providers,
-- the webhook subscriptions those connections hold, and the append-only audit log.
-- Every column ending in _enc holds an IntegrationCrypto envelope bound to its row and column.

CREATE EXTENSION IF NOT EXISTS citext;

CREATE TABLE users (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email         citext NOT NULL UNIQUE,
  display_name  text NOT NULL,
  password_hash text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_sessions (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  token_hash  text NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  revoked_at  timestamptz
);
CREATE INDEX user_sessions_user_idx ON user_sessions (user_id);

CREATE TYPE connection_status AS ENUM ('pending', 'active', 'needs_reauth', 'disconnecting', 'disconnected', 'failed');

CREATE TABLE integration_connections (
  id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id                     uuid NOT NULL REFERENCES users (id),
  provider                    text NOT NULL,
  status                      connection_status NOT NULL DEFAULT 'pending',
  workflow_id                 text NOT NULL UNIQUE,
  scopes                      text[] NOT NULL DEFAULT '{}',
  access_token_enc            text,
  refresh_token_enc           text,
  -- The refresh token used before the latest rotation, kept until the new one has worked once.
  previous_refresh_token_enc  text,
  token_version               integer NOT NULL DEFAULT 0,
  access_token_expires_at     timestamptz,
  last_refreshed_at           timestamptz,
  last_error_kind             text,
  last_error_message          text,
  last_error_at               timestamptz,
  revocation_outcome          text,
  created_at                  timestamptz NOT NULL DEFAULT now(),
  updated_at                  timestamptz NOT NULL DEFAULT now(),
  disconnected_at             timestamptz
);
-- One live connection per user and provider: reconnecting re-authorises the same connection.
CREATE UNIQUE INDEX integration_connections_live_idx
  ON integration_connections (user_id, provider)
  WHERE status NOT IN ('disconnected', 'failed');

-- One row per started authorization (the OAuth `state`). The state itself is never stored, only its hash.
CREATE TABLE integration_authorizations (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id            uuid NOT NULL REFERENCES users (id),
  provider           text NOT NULL,
  state_hash         text NOT NULL UNIQUE,
  code_verifier_enc  text,
  code_enc           text,
  redirect_uri       text NOT NULL,
  connection_id      uuid REFERENCES integration_connections (id),
  created_at         timestamptz NOT NULL DEFAULT now(),
  expires_at         timestamptz NOT NULL,
  consumed_at        timestamptz,
  exchanged_at       timestamptz
);
CREATE INDEX integration_authorizations_user_idx ON integration_authorizations (user_id, created_at);

CREATE TABLE webhook_subscriptions (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  connection_id    uuid NOT NULL REFERENCES integration_connections (id),
  provider         text NOT NULL,
  kind             text NOT NULL,
  external_id      text NOT NULL,
  resource         text NOT NULL,
  resource_id      text,
  verification_enc text,
  status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'stopped', 'expired', 'failed')),
  expires_at       timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  stopped_at       timestamptz,
  UNIQUE (provider, external_id)
);
CREATE INDEX webhook_subscriptions_connection_idx ON webhook_subscriptions (connection_id);

CREATE TABLE audit_log (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  occurred_at    timestamptz NOT NULL DEFAULT now(),
  action         text NOT NULL,
  outcome        text NOT NULL CHECK (outcome IN ('success', 'failure')),
  actor_type     text NOT NULL CHECK (actor_type IN ('user', 'client', 'system', 'operator')),
  actor_id       text,
  user_id        uuid,
  client_id      text,
  provider       text,
  connection_id  uuid,
  ip_address     inet,
  user_agent     text,
  details        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_action_idx ON audit_log (action, occurred_at);
CREATE INDEX audit_log_connection_idx ON audit_log (connection_id, occurred_at);
CREATE INDEX audit_log_user_idx ON audit_log (user_id, occurred_at);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only
  BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
