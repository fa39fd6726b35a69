-- Voice assistants (Alexa, Google Home) as clients of our authorization server, and one device link per
-- voice grant, owned by its voice-device workflow.

-- Which platform a voice client serves; null for every other kind of client (and for voice clients
-- registered before platforms were known, which link no devices).
ALTER TABLE oauth_clients ADD COLUMN voice_platform text CHECK (voice_platform IN ('alexa', 'google'));
ALTER TABLE oauth_clients ADD CHECK (voice_platform IS NULL OR kind = 'voice');

-- Google's account linking sends no PKCE challenge (client-metadata.ts mayOmitPkce): its requests and
-- codes carry none, and such a code is never redeemed with a code_verifier (RFC 9700 section 4.8.2).
ALTER TABLE oauth_authorization_requests ALTER COLUMN code_challenge DROP NOT NULL;
ALTER TABLE oauth_authorization_codes ALTER COLUMN code_challenge DROP NOT NULL;

-- Rotation grace for voice clients: a rotated refresh token answers again with the pair that replaced
-- it (an IntegrationCrypto envelope, bound to this row) until that successor has been used once or
-- VOICE_REFRESH_GRACE_SECONDS have passed (successor_response_expires_at); then the envelope is wiped.
ALTER TABLE oauth_refresh_tokens ADD COLUMN successor_id uuid REFERENCES oauth_refresh_tokens (id) ON DELETE SET NULL;
ALTER TABLE oauth_refresh_tokens ADD COLUMN successor_response_enc text;
ALTER TABLE oauth_refresh_tokens ADD COLUMN successor_response_expires_at timestamptz;
-- Using a successor wipes its predecessor's envelope, found by this index.
CREATE INDEX oauth_refresh_tokens_successor_idx ON oauth_refresh_tokens (successor_id) WHERE successor_id IS NOT NULL;
CREATE INDEX oauth_refresh_tokens_successor_response_idx ON oauth_refresh_tokens (successor_response_expires_at)
  WHERE successor_response_enc IS NOT NULL;

CREATE TABLE voice_devices (
  id                         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  platform                   text NOT NULL CHECK (platform IN ('alexa', 'google')),
  user_id                    uuid NOT NULL REFERENCES users (id),
  client_id                  text NOT NULL REFERENCES oauth_clients (id),
  -- one device link per voice grant: relinking while the grant lives is the same device.
  grant_id                   uuid NOT NULL UNIQUE REFERENCES oauth_grants (id),
  status                     text NOT NULL DEFAULT 'linked' CHECK (status IN ('linked', 'unlinking', 'unlinked')),
  workflow_id                text NOT NULL,
  workflow_started_at        timestamptz,
  -- Alexa: the skill user id seen on requests (skill events name only it), and the user's event-gateway region.
  alexa_user_id              text,
  alexa_region               text CHECK (alexa_region IN ('NA', 'EU', 'FE')),
  -- Alexa's permission grant (AcceptGrant): the code waits here, encrypted, until the workflow exchanges it.
  lwa_grant_code_enc         text,
  lwa_access_token_enc       text,
  lwa_refresh_token_enc      text,
  lwa_access_token_expires_at timestamptz,
  lwa_token_version          integer NOT NULL DEFAULT 0,
  lwa_refreshed_at           timestamptz,
  -- Google: Home Graph's agent user was deleted on unlink (exactly once).
  agent_user_deleted_at      timestamptz,
  last_error_kind            text,
  last_error_message         text,
  unlink_reason              text,
  created_at                 timestamptz NOT NULL DEFAULT now(),
  updated_at                 timestamptz NOT NULL DEFAULT now(),
  unlinked_at                timestamptz
);
CREATE INDEX voice_devices_user_idx ON voice_devices (user_id);
CREATE INDEX voice_devices_alexa_user_idx ON voice_devices (alexa_user_id) WHERE alexa_user_id IS NOT NULL;
