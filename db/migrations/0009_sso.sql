-- Single sign-on between the PM app (api-server, an OpenID Provider) and the Reality Portal
-- (reality-server, its first-party relying party), with the portal's own users and sessions.

-- PM users: roles (mapped onto portal roles by sso_role_mappings) and disablement. roles_version grows
-- with every change of roles or of a mapping they use; a portal session remembers the version it applied.
ALTER TABLE users ADD COLUMN roles text[] NOT NULL DEFAULT '{}';
ALTER TABLE users ADD COLUMN roles_version integer NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled_at timestamptz;

-- PM sessions: the session id is the `sid` of id_tokens, SSO tokens and logout tokens. created_at is
-- the `auth_time`. last_seen_at (written at most once a minute) drives the idle expiry
-- (SESSION_IDLE_SECONDS); ended_reason says why a revoked session ended.
ALTER TABLE user_sessions ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE user_sessions ADD COLUMN ended_reason text;

-- Signing keys belong to the api-server's authorization server or to the reality-server (whose logout
-- tokens to the api-server the worker signs); each owner has its own newest key and its own key set.
ALTER TABLE oauth_signing_keys ADD COLUMN owner text NOT NULL DEFAULT 'authorization-server'
  CHECK (owner IN ('authorization-server', 'reality-server'));

-- OpenID Connect client metadata. A first-party client (the Reality Portal) is never shown a consent page.
ALTER TABLE oauth_clients ADD COLUMN first_party boolean NOT NULL DEFAULT false;
ALTER TABLE oauth_clients ADD COLUMN post_logout_redirect_uris text[] NOT NULL DEFAULT '{}';
ALTER TABLE oauth_clients ADD COLUMN backchannel_logout_uri text;

-- OpenID Connect request parameters carried from /oauth/authorize to the code and on to the id_token.
ALTER TABLE oauth_authorization_requests ADD COLUMN nonce text;
ALTER TABLE oauth_authorization_requests ADD COLUMN max_age integer;
ALTER TABLE oauth_authorization_requests ADD COLUMN prompt text;
ALTER TABLE oauth_authorization_codes ADD COLUMN nonce text;
ALTER TABLE oauth_authorization_codes ADD COLUMN session_id uuid REFERENCES user_sessions (id) ON DELETE SET NULL;
ALTER TABLE oauth_authorization_codes ADD COLUMN auth_time timestamptz;
-- A refresh of an openid grant issues a new id_token with the session it began in.
ALTER TABLE oauth_refresh_tokens ADD COLUMN session_id uuid REFERENCES user_sessions (id) ON DELETE SET NULL;
ALTER TABLE oauth_refresh_tokens ADD COLUMN auth_time timestamptz;
-- Housekeeping deletes old user_sessions; each deletion finds the references it sets to null by these indexes.
CREATE INDEX oauth_authorization_codes_session_idx ON oauth_authorization_codes (session_id);
CREATE INDEX oauth_refresh_tokens_session_idx ON oauth_refresh_tokens (session_id);

-- PM roles onto portal roles. The seeded rows are the defaults; operators change them (admin API, CLI).
CREATE TABLE sso_role_mappings (
  pm_role       text PRIMARY KEY CHECK (pm_role ~ '^[a-z][a-z0-9_-]{0,62}$'),
  portal_roles  text[] NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO sso_role_mappings (pm_role, portal_roles) VALUES
  ('owner', '{portal_admin,listing_editor}'),
  ('manager', '{listing_editor}'),
  ('agent', '{listing_editor}'),
  ('viewer', '{listing_viewer}');

-- One-time SSO tokens: a jti is recorded when redeemed, and the primary key makes a second redemption
-- (even a concurrent one) fail. Rows outlive the token's 60 s only until housekeeping removes them.
CREATE TABLE sso_token_redemptions (
  jti          uuid PRIMARY KEY,
  user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  redeemed_at  timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL
);
CREATE INDEX sso_token_redemptions_user_idx ON sso_token_redemptions (user_id);
CREATE INDEX sso_token_redemptions_expiry_idx ON sso_token_redemptions (expires_at);

-- The portal's own users. A PM user's portal account is linked by pm_user_id (the stable id, never the
-- email) and created on the first SSO. A portal-only account (pm_user_id null) has its own password.
CREATE TABLE portal_users (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  pm_user_id     uuid UNIQUE REFERENCES users (id) ON DELETE CASCADE,
  email          citext NOT NULL,
  display_name   text NOT NULL,
  password_hash  text,
  roles          text[] NOT NULL DEFAULT '{}',
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CHECK ((pm_user_id IS NULL) = (password_hash IS NOT NULL))
);
-- Emails identify only portal-only accounts; an SSO account is found by its PM user.
CREATE UNIQUE INDEX portal_users_local_email_idx ON portal_users (email) WHERE pm_user_id IS NULL;

-- Portal sessions. An SSO session names the PM session it came from (pm_session_id, the `sid`) and the
-- roles_version of the PM user it applied; a portal-only session has neither.
CREATE TABLE portal_sessions (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  portal_user_id  uuid NOT NULL REFERENCES portal_users (id) ON DELETE CASCADE,
  token_hash      text NOT NULL UNIQUE,
  pm_session_id   uuid REFERENCES user_sessions (id) ON DELETE SET NULL,
  roles_version   integer,
  -- how the session began: 'sso_token' (the PM app's button), 'oidc' (authorization code flow), 'password'.
  method          text NOT NULL CHECK (method IN ('sso_token', 'oidc', 'password')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  last_seen_at    timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  ended_at        timestamptz,
  ended_reason    text,
  CONSTRAINT portal_sessions_ended_reason_check CHECK ((ended_at IS NULL) = (ended_reason IS NULL))
);
-- Not partial: a deleted PM session (housekeeping) or portal account finds its portal sessions by them too.
CREATE INDEX portal_sessions_pm_session_idx ON portal_sessions (pm_session_id);
CREATE INDEX portal_sessions_user_idx ON portal_sessions (portal_user_id);
-- When the session stopped being usable (LEAST ignores a null ended_at), which housekeeping deletes by.
CREATE INDEX portal_sessions_over_idx ON portal_sessions (LEAST(ended_at, expires_at));

-- Logout tokens a receiver accepted, by receiver: a jti is recorded only once its sessions have ended,
-- so a delivery retried after a failure is still honoured, and a replay afterwards is refused.
CREATE TABLE backchannel_logout_receipts (
  receiver     text NOT NULL CHECK (receiver IN ('api-server', 'reality-server')),
  jti          text NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  PRIMARY KEY (receiver, jti)
);
CREATE INDEX backchannel_logout_receipts_expiry_idx ON backchannel_logout_receipts (expires_at);
