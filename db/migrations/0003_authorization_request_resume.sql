-- An authorization request that passed validation while the user was not signed in is kept here
-- (user_id and csrf_hash NULL) so the login page needs only a short return URL to resume it.
ALTER TABLE oauth_authorization_requests ALTER COLUMN csrf_hash DROP NOT NULL;
ALTER TABLE oauth_authorization_requests
  ADD CONSTRAINT oauth_authorization_requests_pending_check CHECK ((user_id IS NULL) = (csrf_hash IS NULL));

-- A grant's last use is its last token issuance: NULL until the client first redeems a code.
ALTER TABLE oauth_grants ALTER COLUMN last_used_at DROP NOT NULL;
ALTER TABLE oauth_grants ALTER COLUMN last_used_at DROP DEFAULT;
