-- Which kind of call left a lease's unanswered mark ('refresh', or 'exchange:<authorization id>'): a
-- refresh's lost answer says nothing about an authorization code, nor an exchange's about a refresh token.
ALTER TABLE integration_token_leases ADD COLUMN unanswered_call text;

-- A token whose revocation one revoker has under way: another (the exchange's immediate try, the
-- workflow's activity) leaves it alone until the claim lapses, so a token is revoked and audited once.
ALTER TABLE unkept_provider_tokens ADD COLUMN claimed_until timestamptz;
-- An exchange whose store failed for good revokes what it obtained rather than drop it.
ALTER TABLE unkept_provider_tokens DROP CONSTRAINT unkept_provider_tokens_reason_check;
ALTER TABLE unkept_provider_tokens ADD CONSTRAINT unkept_provider_tokens_reason_check
  CHECK (reason IN ('insufficient_scope', 'disconnected_during_authorization', 'superseded_by_reconsent', 'store_failed'));
