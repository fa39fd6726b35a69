import type { DatabasePool } from 'slonik';
import type { AuditEntry, AuditLog } from '../audit';
import { revokeAccessToken, revokeTokenFamily } from '../../db/queries/oauth-tokens';
import type { OAuthClientRow } from '../../db/queries/oauth-clients';
import { findToken } from './introspection';
import type { TokenIssuer } from './token-issuer';

/**
 * RFC 7009 revocation. Revoking a refresh token ends its whole token family (every refresh and
 * access token descended from one authorization code); revoking an access token ends that `jti`.
 * Tokens of other clients and unknown tokens are left alone; the caller answers 200 either way.
 */
export class TokenRevocation {
  constructor(
    private readonly db: DatabasePool,
    private readonly tokens: TokenIssuer,
    private readonly audit: AuditLog,
  ) {}

  async revoke(requester: OAuthClientRow, token: string, hint: string | undefined, origin: AuditEntry['origin']): Promise<void> {
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
      return;
    }
    if (found.row.clientId !== requester.id) {
      await this.audit.record({ ...entry('failure', { kind: found.kind, revoked: false, reason: 'issued to another client' }), userId: undefined });
      return;
    }
    await this.db.transaction(async (transaction) => {
      if (found.kind === 'refresh_token') await revokeTokenFamily(transaction, found.row, 'revoked by the client');
      else await revokeAccessToken(transaction, found.row.jti);
      await this.audit.record(entry('success', { kind: found.kind, revoked: true }), transaction);
    });
  }
}
