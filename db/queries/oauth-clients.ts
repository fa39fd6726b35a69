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
  /** Set only by operators: a signed-in user is never shown a consent page for it (the Reality Portal). */
  firstParty: z.boolean(),
  /** Where RP-initiated logout may send the browser afterwards (exact match). */
  postLogoutRedirectUris: z.array(z.string()),
  /** Where OpenID Connect Back-Channel Logout tokens for the client's sessions are posted. */
  backchannelLogoutUri: z.string().nullable(),
  createdAt: z.number(),
  secretRotatedAt: z.number().nullable(),
  revokedAt: z.number().nullable(),
});
export type OAuthClientRow = z.infer<typeof clientRow>;

const CLIENT_COLUMNS = sql.fragment`
  id, name, client_type AS "clientType", token_endpoint_auth_method AS "tokenEndpointAuthMethod",
  redirect_uris AS "redirectUris", grant_types AS "grantTypes", scopes, kind, voice_platform AS "voicePlatform", registered_by AS "registeredBy",
  first_party AS "firstParty", post_logout_redirect_uris AS "postLogoutRedirectUris", backchannel_logout_uri AS "backchannelLogoutUri",
  created_at AS "createdAt", secret_rotated_at AS "secretRotatedAt", revoked_at AS "revokedAt"`;

/** The OpenID Connect members of a client; absent ones take the columns' defaults. */
type OpenIdClientMembers = 'firstParty' | 'postLogoutRedirectUris' | 'backchannelLogoutUri';

export type NewClient = Omit<OAuthClientRow, 'createdAt' | 'secretRotatedAt' | 'revokedAt' | 'voicePlatform' | OpenIdClientMembers> & {
  secretHash: string | null;
  voicePlatform?: OAuthClientRow['voicePlatform'];
} & Partial<Pick<OAuthClientRow, OpenIdClientMembers>>;

export function insertClient(db: CommonQueryMethods, client: NewClient): Promise<OAuthClientRow> {
  return db.one(sql.type(clientRow)`
    INSERT INTO oauth_clients (id, name, client_type, token_endpoint_auth_method, secret_hash, redirect_uris, grant_types, scopes, kind, voice_platform,
                               registered_by, first_party, post_logout_redirect_uris, backchannel_logout_uri)
    VALUES (${client.id}, ${client.name}, ${client.clientType}, ${client.tokenEndpointAuthMethod}, ${client.secretHash},
            ${sql.array(client.redirectUris, 'text')}, ${sql.array(client.grantTypes, 'text')}, ${sql.array(client.scopes, 'text')},
            ${client.kind}, ${client.voicePlatform ?? null}, ${client.registeredBy}, ${client.firstParty ?? false},
            ${sql.array(client.postLogoutRedirectUris ?? [], 'text')}, ${client.backchannelLogoutUri ?? null})
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

/** The OpenID Connect members an operator may change after registration; absent ones stay as they are. */
export interface OpenIdClientChange {
  firstParty?: boolean;
  postLogoutRedirectUris?: string[];
  backchannelLogoutUri?: string | null;
}

export function updateOpenIdMembers(db: CommonQueryMethods, id: string, change: OpenIdClientChange): Promise<OAuthClientRow | null> {
  const postLogout = change.postLogoutRedirectUris === undefined ? null : sql.array(change.postLogoutRedirectUris, 'text');
  return db.maybeOne(sql.type(clientRow)`
    UPDATE oauth_clients SET
      first_party = COALESCE(${change.firstParty ?? null}, first_party),
      post_logout_redirect_uris = COALESCE(${postLogout}, post_logout_redirect_uris),
      backchannel_logout_uri = ${change.backchannelLogoutUri === undefined ? sql.fragment`backchannel_logout_uri` : change.backchannelLogoutUri},
      updated_at = now()
    WHERE id = ${id} AND revoked_at IS NULL
    RETURNING ${CLIENT_COLUMNS}`);
}

/**
 * Makes a confidential client an operator configured (the Reality Portal's) what its configuration
 * says, in one statement; the secret hash only when given. Null when the client is revoked.
 */
export function updateConfiguredClient(
  db: CommonQueryMethods,
  client: Omit<NewClient, 'registeredBy' | 'secretHash' | 'clientType'> & { secretHash?: string },
): Promise<OAuthClientRow | null> {
  const secret = client.secretHash === undefined ? sql.fragment`secret_hash` : sql.fragment`${client.secretHash}`;
  const rotatedAt = client.secretHash === undefined ? sql.fragment`secret_rotated_at` : sql.fragment`now()`;
  return db.maybeOne(sql.type(clientRow)`
    UPDATE oauth_clients SET
      client_type = 'confidential', secret_hash = ${secret}, secret_rotated_at = ${rotatedAt},
      name = ${client.name}, token_endpoint_auth_method = ${client.tokenEndpointAuthMethod},
      redirect_uris = ${sql.array(client.redirectUris, 'text')}, grant_types = ${sql.array(client.grantTypes, 'text')},
      scopes = ${sql.array(client.scopes, 'text')}, kind = ${client.kind}, first_party = ${client.firstParty ?? false},
      post_logout_redirect_uris = ${sql.array(client.postLogoutRedirectUris ?? [], 'text')},
      backchannel_logout_uri = ${client.backchannelLogoutUri ?? null},
      updated_at = now()
    WHERE id = ${client.id} AND revoked_at IS NULL
    RETURNING ${CLIENT_COLUMNS}`);
}

/** Returns true only for the call that revoked the client. */
export async function markClientRevoked(db: CommonQueryMethods, id: string): Promise<boolean> {
  const result = await db.query(sql.unsafe`UPDATE oauth_clients SET revoked_at = now(), updated_at = now() WHERE id = ${id} AND revoked_at IS NULL`);
  return result.rowCount === 1;
}
