import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const clientRow = z.object({
  id: z.string(),
  name: z.string(),
  clientType: z.enum(['confidential', 'public']),
  tokenEndpointAuthMethod: z.enum(['client_secret_basic', 'client_secret_post', 'none']),
  redirectUris: z.array(z.string()),
  grantTypes: z.array(z.string()),
  scopes: z.array(z.string()),
  kind: z.enum(['third_party', 'voice', 'service']),
  /** The voice platform a voice client serves (its device links belong to that platform); null otherwise. */
  voicePlatform: z.enum(['alexa', 'google']).nullable(),
  registeredBy: z.enum(['admin', 'dynamic']),
  createdAt: z.number(),
  secretRotatedAt: z.number().nullable(),
  revokedAt: z.number().nullable(),
});
export type OAuthClientRow = z.infer<typeof clientRow>;

const CLIENT_COLUMNS = sql.fragment`
  id, name, client_type AS "clientType", token_endpoint_auth_method AS "tokenEndpointAuthMethod",
  redirect_uris AS "redirectUris", grant_types AS "grantTypes", scopes, kind, voice_platform AS "voicePlatform", registered_by AS "registeredBy",
  created_at AS "createdAt", secret_rotated_at AS "secretRotatedAt", revoked_at AS "revokedAt"`;

export type NewClient = Omit<OAuthClientRow, 'createdAt' | 'secretRotatedAt' | 'revokedAt' | 'voicePlatform'> & {
  secretHash: string | null;
  voicePlatform?: OAuthClientRow['voicePlatform'];
};

export function insertClient(db: CommonQueryMethods, client: NewClient): Promise<OAuthClientRow> {
  return db.one(sql.type(clientRow)`
    INSERT INTO oauth_clients (id, name, client_type, token_endpoint_auth_method, secret_hash, redirect_uris, grant_types, scopes, kind, voice_platform, registered_by)
    VALUES (${client.id}, ${client.name}, ${client.clientType}, ${client.tokenEndpointAuthMethod}, ${client.secretHash},
            ${sql.array(client.redirectUris, 'text')}, ${sql.array(client.grantTypes, 'text')}, ${sql.array(client.scopes, 'text')},
            ${client.kind}, ${client.voicePlatform ?? null}, ${client.registeredBy})
    RETURNING ${CLIENT_COLUMNS}`);
}

export function findClient(db: CommonQueryMethods, id: string): Promise<OAuthClientRow | null> {
  return db.maybeOne(sql.type(clientRow)`SELECT ${CLIENT_COLUMNS} FROM oauth_clients WHERE id = ${id}`);
}

/** The client with its secret hash, in one query (client authentication). */
export function findClientWithSecretHash(db: CommonQueryMethods, id: string): Promise<(OAuthClientRow & { secretHash: string | null }) | null> {
  return db.maybeOne(sql.type(clientRow.extend({ secretHash: z.string().nullable() }))`
    SELECT ${CLIENT_COLUMNS}, secret_hash AS "secretHash" FROM oauth_clients WHERE id = ${id}`);
}

export function listClients(db: CommonQueryMethods): Promise<readonly OAuthClientRow[]> {
  return db.any(sql.type(clientRow)`SELECT ${CLIENT_COLUMNS} FROM oauth_clients ORDER BY created_at, id`);
}

export function updateRedirectUris(db: CommonQueryMethods, id: string, redirectUris: string[]): Promise<OAuthClientRow | null> {
  return db.maybeOne(sql.type(clientRow)`
    UPDATE oauth_clients SET redirect_uris = ${sql.array(redirectUris, 'text')}, updated_at = now()
    WHERE id = ${id} AND revoked_at IS NULL
    RETURNING ${CLIENT_COLUMNS}`);
}

export function updateSecretHash(db: CommonQueryMethods, id: string, secretHash: string): Promise<OAuthClientRow | null> {
  return db.maybeOne(sql.type(clientRow)`
    UPDATE oauth_clients SET secret_hash = ${secretHash}, secret_rotated_at = now(), updated_at = now()
    WHERE id = ${id} AND revoked_at IS NULL AND client_type = 'confidential'
    RETURNING ${CLIENT_COLUMNS}`);
}

/** Returns true only for the call that revoked the client. */
export async function markClientRevoked(db: CommonQueryMethods, id: string): Promise<boolean> {
  const result = await db.query(sql.unsafe`UPDATE oauth_clients SET revoked_at = now(), updated_at = now() WHERE id = ${id} AND revoked_at IS NULL`);
  return result.rowCount === 1;
}
