import { sql, type DatabasePool } from 'slonik';
import { findClientWithSecretHash, insertClient, updateConfiguredClient } from '../../db/queries/oauth-clients';
import type { AuditLog } from '../audit';
import { ConfigError, type Config } from '../config';
import { ClientMetadataError, clientMetadataEnvironment, validateClientMetadata, type ValidClientMetadata } from '../oauth-server/client-metadata';
import { hashBearerValue, matchesStoredHash } from '../secrets';

// Any constant works; it serialises the check-and-write of api-server processes starting together.
const PORTAL_CLIENT_LOCK = 870_010;

/** What ensureRealityPortalClient did. `revoked`: an operator revoked the client, and it stays revoked. */
export type PortalClientOutcome = 'not_configured' | 'created' | 'updated' | 'unchanged' | 'revoked';

/** The Reality Portal's client as the configuration describes it (REALITY_PUBLIC_URL, REALITY_OIDC_CLIENT_ID). */
export function realityPortalClientMetadata(config: Config): ValidClientMetadata {
  const { publicUrl } = config.sso.portal;
  try {
    return validateClientMetadata(
      {
        name: 'Reality Portal',
        redirectUris: [`${publicUrl}/sso/callback`],
        // The portal signs users in and keeps its own sessions; it never calls the api-server on their behalf.
        grantTypes: ['authorization_code'],
        scopes: ['openid', 'profile', 'email'],
        tokenEndpointAuthMethod: 'client_secret_basic',
        kind: 'third_party',
        firstParty: true,
        postLogoutRedirectUris: [`${publicUrl}/`],
        backchannelLogoutUri: `${publicUrl}/sso/backchannel-logout`,
        clientId: config.sso.portal.clientId,
      },
      clientMetadataEnvironment(config),
    );
  } catch (error) {
    if (error instanceof ClientMetadataError) throw new ConfigError([`REALITY_PUBLIC_URL: the portal's OpenID Connect client cannot use it: ${error.message}`]);
    throw error;
  }
}

const COMPARED_MEMBERS = {
  name: 'name',
  tokenEndpointAuthMethod: 'token_endpoint_auth_method',
  redirectUris: 'redirect_uris',
  grantTypes: 'grant_types',
  scopes: 'scopes',
  kind: 'kind',
  firstParty: 'first_party',
  postLogoutRedirectUris: 'post_logout_redirect_uris',
  backchannelLogoutUri: 'backchannel_logout_uri',
} as const satisfies Partial<Record<keyof ValidClientMetadata, string>>;

/**
 * Registers the Reality Portal as a first-party confidential client of the authorization server, or
 * brings the registered one in line with the configuration, when REALITY_OIDC_CLIENT_SECRET is set. The
 * secret is stored as its hash like every client's; a changed secret replaces the hash. Idempotent, and
 * safe when several processes start at once (an advisory lock); a creation or change is audited
 * (OAuthClientCreate, OAuthClientUpdate naming the changed members, never the secret). A client an
 * operator revoked is left revoked. Throws ConfigError when REALITY_PUBLIC_URL cannot make valid URIs.
 */
export async function ensureRealityPortalClient(db: DatabasePool, audit: AuditLog, config: Config): Promise<PortalClientOutcome> {
  const { clientId, clientSecret } = config.sso.portal;
  if (clientSecret === undefined) return 'not_configured';
  const metadata = realityPortalClientMetadata(config);
  const actor = { type: 'system', id: 'api-server' } as const;
  return db.transaction(async (transaction) => {
    await transaction.query(sql.unsafe`SELECT pg_advisory_xact_lock(${PORTAL_CLIENT_LOCK})`);
    const existing = await findClientWithSecretHash(transaction, clientId);
    if (!existing) {
      const client = await insertClient(transaction, { ...metadata, id: clientId, clientType: 'confidential', secretHash: hashBearerValue(clientSecret), registeredBy: 'admin' });
      await audit.record(
        {
          action: 'OAuthClientCreate',
          outcome: 'success',
          actor,
          clientId,
          details: {
            name: client.name,
            kind: client.kind,
            registered_by: client.registeredBy,
            client_type: client.clientType,
            first_party: client.firstParty,
            redirect_uris: client.redirectUris,
            post_logout_redirect_uris: client.postLogoutRedirectUris,
            backchannel_logout_uri: client.backchannelLogoutUri,
            scopes: client.scopes,
          },
        },
        transaction,
      );
      return 'created';
    }
    if (existing.revokedAt !== null) return 'revoked';
    const changed: string[] = Object.entries(COMPARED_MEMBERS)
      .filter(([member]) => JSON.stringify(existing[member as keyof typeof COMPARED_MEMBERS]) !== JSON.stringify(metadata[member as keyof typeof COMPARED_MEMBERS]))
      .map(([, name]) => name);
    const secretChanged = existing.secretHash === null || !matchesStoredHash(clientSecret, existing.secretHash);
    if (secretChanged) changed.push('client_secret');
    if (changed.length === 0) return 'unchanged';
    await updateConfiguredClient(transaction, { ...metadata, id: clientId, ...(secretChanged ? { secretHash: hashBearerValue(clientSecret) } : {}) });
    await audit.record({ action: 'OAuthClientUpdate', outcome: 'success', actor, clientId, details: { fields: changed } }, transaction);
    return 'updated';
  });
}
