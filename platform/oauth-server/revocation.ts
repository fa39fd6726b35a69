import type { DatabasePool } from 'slonik';
import type { AuditEntry, AuditLog } from '../audit';
import { findAccessToken, findRefreshTokenStatus, revokeAccessToken, revokeTokenFamilyConcurrently } from '../../db/queries/oauth-tokens';
import type { OAuthClientRow } from '../../db/queries/oauth-clients';
import { hashBearerValue } from '../secrets';
import { lookupOrder } from './introspection';
import type { TokenIssuer } from './token-issuer';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Found =
  | { kind: 'access_token'; clientId: string; userId: string | null; jti: string }
  | { kind: 'refresh_token'; clientId: string; userId: string; familyId: string };

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
    let found: Found | undefined;
    for (const kind of lookupOrder(hint)) {
      found = kind === 'access_token' ? await this.findAccessToken(token) : await this.findRefreshToken(token);
      if (found) break;
    }
    const entry = (outcome: AuditEntry['outcome'], details: AuditEntry['details']): AuditEntry => ({
      action: 'OAuthRevoke',
      outcome,
      actor: { type: 'client', id: requester.id },
      clientId: requester.id,
      userId: found?.userId ?? undefined,
      origin,
      details,
    });
    if (!found) {
      await this.audit.record(entry('success', { kind: 'unknown', revoked: false }));
      return;
    }
    if (found.clientId !== requester.id) {
      await this.audit.record({ ...entry('failure', { kind: found.kind, revoked: false, reason: 'issued to another client' }), userId: undefined });
      return;
    }
    await this.db.transaction(async (transaction) => {
      if (found.kind === 'refresh_token') await revokeTokenFamilyConcurrently(transaction, found.familyId, 'revoked by the client');
      else await revokeAccessToken(transaction, found.jti);
      await this.audit.record(entry('success', { kind: found.kind, revoked: true }), transaction);
    });
  }

  private async findAccessToken(token: string): Promise<Found | undefined> {
    if (token.split('.').length !== 3) return undefined;
    const claims = await this.tokens.verifyAccessToken(token);
    if (!claims || typeof claims.jti !== 'string' || !UUID.test(claims.jti)) return undefined;
    const row = await findAccessToken(this.db, claims.jti);
    return row ? { kind: 'access_token', clientId: row.clientId, userId: row.userId, jti: row.jti } : undefined;
  }

  private async findRefreshToken(token: string): Promise<Found | undefined> {
    if (token.split('.').length === 3) return undefined;
    const row = await findRefreshTokenStatus(this.db, hashBearerValue(token));
    return row ? { kind: 'refresh_token', clientId: row.clientId, userId: row.userId, familyId: row.familyId } : undefined;
  }
}
