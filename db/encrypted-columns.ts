/**
 * Every column that holds an IntegrationCrypto envelope. The associated data of each value is
 * (table, column, id), so this list is also what the re-encryption command walks.
 */
export const ENCRYPTED_COLUMNS = {
  integration_connections: ['access_token_enc', 'refresh_token_enc', 'previous_refresh_token_enc'],
  integration_authorizations: ['code_verifier_enc', 'code_enc'],
  webhook_subscriptions: ['verification_enc'],
  oauth_signing_keys: ['private_jwk_enc'],
  oauth_refresh_tokens: ['successor_response_enc'],
  voice_devices: ['lwa_grant_code_enc', 'lwa_access_token_enc', 'lwa_refresh_token_enc', 'lwa_exchanged_tokens_enc'],
  unkept_provider_tokens: ['token_enc'],
} as const;

export type EncryptedTable = keyof typeof ENCRYPTED_COLUMNS;
export type EncryptedColumn<T extends EncryptedTable> = (typeof ENCRYPTED_COLUMNS)[T][number];

/** The associated data of one encrypted value; typed so that a misspelt column cannot compile. */
export function encryptedField<T extends EncryptedTable>(table: T, column: EncryptedColumn<T>, rowId: string) {
  return { table, column, rowId };
}

export const connectionColumn = (connectionId: string, column: EncryptedColumn<'integration_connections'>) =>
  encryptedField('integration_connections', column, connectionId);

export const authorizationColumn = (authorizationId: string, column: EncryptedColumn<'integration_authorizations'>) =>
  encryptedField('integration_authorizations', column, authorizationId);

export const voiceDeviceColumn = (deviceId: string, column: EncryptedColumn<'voice_devices'>) => encryptedField('voice_devices', column, deviceId);

export const refreshTokenColumn = (refreshTokenId: string, column: EncryptedColumn<'oauth_refresh_tokens'>) =>
  encryptedField('oauth_refresh_tokens', column, refreshTokenId);

export const unkeptTokenColumn = (unkeptTokenId: string) => encryptedField('unkept_provider_tokens', 'token_enc', unkeptTokenId);
