import type { DatabasePool } from 'slonik';
import { revokeClientTokens } from '../../db/queries/oauth-tokens';
import {
  findClient,
  markClientRevoked,
  updateOpenIdMembers,
  updateRedirectUris,
  updateSecretHash,
  type OAuthClientRow,
  type OpenIdClientChange,
} from '../../db/queries/oauth-clients';
import { revokeClientGrants } from '../../db/queries/oauth-grants';
import type { AuditEntry, AuditLog } from '../audit';
import { hashBearerValue, randomToken } from '../secrets';
import { registerClient } from './clients';
import {
  BACKCHANNEL_LOGOUT_FIRST_PARTY,
  ClientMetadataError,
  validateBackchannelLogoutUri,
  validatePostLogoutRedirectUris,
  validateRedirectUris,
  type ClientMetadataEnvironment,
  type ValidClientMetadata,
} from './client-metadata';

/** The registration names (RFC 7591, OpenID Connect) of the members changeOpenIdMembers changes. */
const OPEN_ID_MEMBER_NAMES: Record<keyof OpenIdClientChange, string> = {
  firstParty: 'first_party',
  postLogoutRedirectUris: 'post_logout_redirect_uris',
  backchannelLogoutUri: 'backchannel_logout_uri',
};

/** Who asked for a change to a client, for the audit row. */
export interface ClientChangeActor {
  actor: AuditEntry['actor'];
  origin: AuditEntry['origin'];
}

export type ClientChangeFailure = 'not_found' | 'revoked' | 'public_client';

export class ClientChangeError extends Error {
  override name = 'ClientChangeError';

  constructor(readonly reason: ClientChangeFailure, message: string) {
    super(message);
  }
}

/**
 * Creating, changing and revoking clients, each with its audit row written in the same transaction.
 * Secrets are returned to the caller once and stored only as hashes; they never reach an audit row.
 */
export class ClientRegistry {
  constructor(
    private readonly db: DatabasePool,
    private readonly audit: AuditLog,
  ) {}

  /**
   * `who.actor` of 'self' names the new client as the actor: a dynamically registered client
   * registers itself, and the holder of the initial access token is known only by its address.
   */
  async create(
    metadata: ValidClientMetadata,
    registeredBy: OAuthClientRow['registeredBy'],
    who: { actor: AuditEntry['actor'] | 'self'; origin: AuditEntry['origin'] },
  ): Promise<{ client: OAuthClientRow; clientSecret: string | undefined }> {
    return this.db.transaction(async (transaction) => {
      const created = await registerClient(transaction, { ...metadata, registeredBy });
      const { client } = created;
      await this.audit.record(
        {
          action: 'OAuthClientCreate',
          outcome: 'success',
          actor: who.actor === 'self' ? { type: 'client', id: client.id } : who.actor,
          clientId: client.id,
          origin: who.origin,
          details: {
            name: client.name,
            kind: client.kind,
            ...(client.voicePlatform === null ? {} : { voice_platform: client.voicePlatform }),
            registered_by: client.registeredBy,
            client_type: client.clientType,
            token_endpoint_auth_method: client.tokenEndpointAuthMethod,
            grant_types: client.grantTypes,
            scopes: client.scopes,
            redirect_uris: client.redirectUris,
            first_party: client.firstParty,
            post_logout_redirect_uris: client.postLogoutRedirectUris,
            backchannel_logout_uri: client.backchannelLogoutUri,
          },
        },
        transaction,
      );
      return created;
    });
  }

  async replaceRedirectUris(clientId: string, redirectUris: string[], who: ClientChangeActor): Promise<OAuthClientRow> {
    return this.db.transaction(async (transaction) => {
      const client = await this.liveClient(transaction, clientId);
      const validated = validateRedirectUris(redirectUris, client.grantTypes, client.voicePlatform);
      const updated = await updateRedirectUris(transaction, clientId, validated);
      if (!updated) throw new ClientChangeError('revoked', 'the client was revoked');
      await this.audit.record(
        {
          action: 'OAuthClientUpdate',
          outcome: 'success',
          actor: who.actor,
          clientId,
          origin: who.origin,
          details: { field: 'redirect_uris', previous_redirect_uris: client.redirectUris, redirect_uris: updated.redirectUris },
        },
        transaction,
      );
      return updated;
    });
  }

  /** Changes the client's OpenID Connect members (first_party, post-logout redirect URIs, back-channel logout URI); audits what changed. */
  async changeOpenIdMembers(clientId: string, change: OpenIdClientChange, environment: ClientMetadataEnvironment, who: ClientChangeActor): Promise<OAuthClientRow> {
    return this.db.transaction(async (transaction) => {
      const client = await this.liveClient(transaction, clientId);
      const firstParty = change.firstParty ?? client.firstParty;
      const validated: OpenIdClientChange = {
        ...(change.firstParty !== undefined ? { firstParty: change.firstParty } : {}),
        ...(change.postLogoutRedirectUris !== undefined
          ? { postLogoutRedirectUris: validatePostLogoutRedirectUris(change.postLogoutRedirectUris, client.grantTypes) }
          : {}),
        ...(change.backchannelLogoutUri !== undefined
          ? { backchannelLogoutUri: validateBackchannelLogoutUri(change.backchannelLogoutUri, { id: clientId, grantTypes: client.grantTypes, firstParty }, environment) }
          : {}),
      };
      if (!firstParty && change.backchannelLogoutUri === undefined && client.backchannelLogoutUri !== null) {
        throw new ClientMetadataError('invalid_client_metadata', `${BACKCHANNEL_LOGOUT_FIRST_PARTY} (send backchannel_logout_uri: null with first_party: false)`);
      }
      if (validated.firstParty && client.clientType !== 'confidential') {
        throw new ClientChangeError('public_client', 'a first-party client must be confidential: anyone can pose as a public client');
      }
      const updated = await updateOpenIdMembers(transaction, clientId, validated);
      if (!updated) throw new ClientChangeError('revoked', 'the client was revoked');
      await this.audit.record(
        {
          action: 'OAuthClientUpdate',
          outcome: 'success',
          actor: who.actor,
          clientId,
          origin: who.origin,
          details: {
            fields: Object.keys(validated).map((member) => OPEN_ID_MEMBER_NAMES[member as keyof OpenIdClientChange]),
            first_party: updated.firstParty,
            post_logout_redirect_uris: updated.postLogoutRedirectUris,
            backchannel_logout_uri: updated.backchannelLogoutUri,
          },
        },
        transaction,
      );
      return updated;
    });
  }

  /** A new secret; the previous one stops working as this transaction commits. */
  async rotateSecret(clientId: string, who: ClientChangeActor): Promise<{ client: OAuthClientRow; clientSecret: string }> {
    return this.db.transaction(async (transaction) => {
      const client = await this.liveClient(transaction, clientId);
      if (client.clientType !== 'confidential') throw new ClientChangeError('public_client', 'a public client has no secret to rotate');
      const clientSecret = randomToken();
      const updated = await updateSecretHash(transaction, clientId, hashBearerValue(clientSecret));
      if (!updated) throw new ClientChangeError('revoked', 'the client was revoked');
      await this.audit.record({ action: 'OAuthClientSecretRotate', outcome: 'success', actor: who.actor, clientId, origin: who.origin }, transaction);
      return { client: updated, clientSecret };
    });
  }

  /**
   * Marks the client revoked and, in the same transaction, revokes every grant and every refresh and
   * access token it holds, so its tokens stop working at once. Revoking a revoked client is a no-op
   * that still answers with the client (idempotent); only the first revocation is audited.
   */
  async revoke(clientId: string, who: ClientChangeActor): Promise<OAuthClientRow> {
    return this.db.transaction(async (transaction) => {
      const existing = await findClient(transaction, clientId);
      if (!existing) throw new ClientChangeError('not_found', 'no such client');
      const revokedNow = await markClientRevoked(transaction, clientId);
      await revokeClientGrants(transaction, clientId);
      await revokeClientTokens(transaction, clientId, 'client revoked');
      if (revokedNow) {
        await this.audit.record({ action: 'OAuthClientRevoke', outcome: 'success', actor: who.actor, clientId, origin: who.origin }, transaction);
      }
      return (await findClient(transaction, clientId))!;
    });
  }

  private async liveClient(db: Parameters<typeof findClient>[0], clientId: string): Promise<OAuthClientRow> {
    const client = await findClient(db, clientId);
    if (!client) throw new ClientChangeError('not_found', 'no such client');
    if (client.revokedAt !== null) throw new ClientChangeError('revoked', 'the client was revoked');
    return client;
  }
}
