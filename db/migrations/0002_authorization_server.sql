-- api-server as an OAuth 2.0 authorization server: clients, user grants, codes, tokens and signing keys.
-- Secrets (client secrets, codes, refresh tokens) are stored only as SHA-256 hashes of high-entropy values;
-- signing keys' private halves are IntegrationCrypto envelopes.

CREATE TABLE oauth_clients (
  id                          text PRIMARY KEY,
  name                        text NOT NULL,
  -- confidential clients authenticate with a secret; public clients (no secret) must use PKCE.
  client_type                 text NOT NULL CHECK (client_type IN ('confidential', 'public')),
  token_endpoint_auth_method  text NOT NULL CHECK (token_endpoint_auth_method IN ('client_secret_basic', 'client_secret_post', 'none')),
  secret_hash                 text,
  redirect_uris               text[] NOT NULL DEFAULT '{}',
  grant_types                 text[] NOT NULL,
  scopes                      text[] NOT NULL,
  -- voice platforms get long-lived refresh tokens (DEVICE_REFRESH_TOKEN_TTL_SECONDS).
  kind                        text NOT NULL DEFAULT 'third_party' CHECK (kind IN ('third_party', 'voice', 'service')),
  registered_by               text NOT NULL CHECK (registered_by IN ('admin', 'dynamic')),
  created_at                  timestamptz NOT NULL DEFAULT now(),
  updated_at                  timestamptz NOT NULL DEFAULT now(),
  secret_rotated_at           timestamptz,
  revoked_at                  timestamptz,
  CHECK ((client_type = 'public') = (secret_hash IS NULL)),
  CHECK ((client_type = 'public') = (token_endpoint_auth_method = 'none'))
);

CREATE TABLE oauth_grants (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id       uuid NOT NULL REFERENCES users (id),
  client_id     text NOT NULL REFERENCES oauth_clients (id),
  scopes        text[] NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz
);
CREATE UNIQUE INDEX oauth_grants_live_idx ON oauth_grants (user_id, client_id) WHERE revoked_at IS NULL;

-- An authorization request between /oauth/authorize and the consent decision.
CREATE TABLE oauth_authorization_requests (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id       text NOT NULL REFERENCES oauth_clients (id),
  user_id         uuid REFERENCES users (id),
  redirect_uri    text NOT NULL,
  scopes          text[] NOT NULL,
  state           text,
  code_challenge  text NOT NULL,
  csrf_hash       text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  decided_at      timestamptz
);

CREATE TABLE oauth_authorization_codes (
  code_hash       text PRIMARY KEY,
  client_id       text NOT NULL REFERENCES oauth_clients (id),
  user_id         uuid NOT NULL REFERENCES users (id),
  grant_id        uuid NOT NULL REFERENCES oauth_grants (id),
  -- every token the code leads to belongs to this family, so a replay can revoke them all.
  family_id       uuid NOT NULL,
  redirect_uri    text NOT NULL,
  scopes          text[] NOT NULL,
  code_challenge  text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  consumed_at     timestamptz
);

CREATE TABLE oauth_refresh_tokens (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash    text NOT NULL UNIQUE,
  family_id     uuid NOT NULL,
  client_id     text NOT NULL REFERENCES oauth_clients (id),
  user_id       uuid NOT NULL REFERENCES users (id),
  grant_id      uuid NOT NULL REFERENCES oauth_grants (id),
  scopes        text[] NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  rotated_at    timestamptz,
  revoked_at    timestamptz,
  revoked_reason text
);
CREATE INDEX oauth_refresh_tokens_family_idx ON oauth_refresh_tokens (family_id);
CREATE INDEX oauth_refresh_tokens_grant_idx ON oauth_refresh_tokens (grant_id);

-- Access tokens are JWTs; this row is what makes their revocation visible at once to introspection.
CREATE TABLE oauth_access_tokens (
  jti         uuid PRIMARY KEY,
  client_id   text NOT NULL REFERENCES oauth_clients (id),
  user_id     uuid REFERENCES users (id),
  grant_id    uuid REFERENCES oauth_grants (id),
  family_id   uuid,
  scopes      text[] NOT NULL,
  issued_at   timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL,
  revoked_at  timestamptz
);
CREATE INDEX oauth_access_tokens_family_idx ON oauth_access_tokens (family_id);
CREATE INDEX oauth_access_tokens_grant_idx ON oauth_access_tokens (grant_id);
CREATE INDEX oauth_access_tokens_client_idx ON oauth_access_tokens (client_id);

CREATE TABLE oauth_signing_keys (
  id               text PRIMARY KEY, -- the JWK `kid`
  alg              text NOT NULL,
  public_jwk       jsonb NOT NULL,
  private_jwk_enc  text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  -- the newest key that is not retired signs; retired keys still verify until the grace period ends.
  retired_at       timestamptz
);

CREATE TABLE user_login_failures (
  email         citext PRIMARY KEY,
  failures      integer NOT NULL DEFAULT 0,
  last_failure  timestamptz NOT NULL DEFAULT now(),
  locked_until  timestamptz
);
