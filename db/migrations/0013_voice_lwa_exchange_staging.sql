-- What Login with Amazon answered for an AcceptGrant code, kept (encrypted, bound to the row) from the
-- moment the code is spent until the tokens are stored: a retry after a failed store stores these
-- instead of sending the spent code again, which LWA would refuse for good.
ALTER TABLE voice_devices ADD COLUMN lwa_exchanged_tokens_enc text;
