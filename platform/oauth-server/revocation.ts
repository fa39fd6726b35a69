import type { DatabasePool } from 'slonik';
import type { AuditEntry, AuditLog } from '../audit';
import { revokeAccessToken, revokeTokenFamily } from '../../db/queries/oauth-tokens';
import type { OAuthClientRow } from '../../db/queries/oauth-clients';
import { findVoiceDeviceByGrant, type VoiceDeviceRow } from '../../db/queries/voice-devices';
import { findToken } from './introspection';
import type { TokenIssuer } from './token-issuer';
import { endVoiceDeviceLinkNow } from './voice-device-unlink';

/**
 * RFC 7009 revocation. Revoking a refresh token ends its whole token family (every refresh and
 * access token descended from one authorization code); revoking an access token ends that `jti`.
 * A voice platform's refresh token is its device link: revoking it ends the link (our side at once,
 * voice-device-unlink.ts), and the device is answered for the caller to tell its workflow.
 * Tokens of other clients and unknown tokens are left alone; the caller answers 200 either way.
 */
export class TokenRevocation {
  constructor(
    private readonly db: DatabasePool,
    private readonly tokens: TokenIssuer,
    private readonly audit: AuditLog,
  ) {}

  async revoke(requester: OAuthClientRow, token: string, hint: string | undefined, origin: AuditEntry['origin']): Promise<{ unlinkedVoiceDevice?: VoiceDeviceRow }> {
    const found = await findToken(this.db, this.tokens, token, hint);
    const entry = (outcome: AuditEntry['outcome'], details: AuditEntry['details']): AuditEntry => ({
      action: 'OAuthRevoke',
      outcome,
      actor: { type: 'client', id: requester.id },
      clientId: requester.id,
      userId: found?.row.userId ?? undefined,
      origin,
      details,
    });
    if (!found) {
      await this.audit.record(entry('success', { kind: 'unknown', revoked: false }));
      return {};
    }
    if (found.row.clientId !== requester.id) {
      await this.audit.record({ ...entry('failure', { kind: found.kind, revoked: false, reason: 'issued to another client' }), userId: undefined });
      return {};
    }
    return this.db.transaction(async (transaction) => {
      if (found.kind === 'access_token') {
        await revokeAccessToken(transaction, found.row.jti);
        await this.audit.record(entry('success', { kind: found.kind, revoked: true }), transaction);
        return {};
      }
      await revokeTokenFamily(transaction, found.row, 'revoked by the client');
      await this.audit.record(entry('success', { kind: found.kind, revoked: true }), transaction);
      const device = await findVoiceDeviceByGrant(transaction, found.row.grantId);
      const unlink = { direction: 'tokens_revoked', requestedBy: { type: 'platform' as const }, ...(origin ? { origin } : {}) };
      if (!device || !(await endVoiceDeviceLinkNow(transaction, this.audit, device, unlink, this.tokens.clock()))) return {};
      return { unlinkedVoiceDevice: device };
    });
  }
}
