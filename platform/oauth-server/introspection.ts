import type { CommonQueryMethods } from 'slonik';
import { UUID } from '../uuid';
import { findAccessTokenStatus, findRefreshTokenStatus, type AccessTokenStatusRow, type RefreshTokenStatusRow } from '../../db/queries/oauth-tokens';
import type { OAuthClientRow } from '../../db/queries/oauth-clients';
import type { AuditEntry, AuditLog } from '../audit';
import { hashBearerValue } from '../secrets';
import type { AccessTokenClaims, TokenIssuer } from './token-issuer';

/** RFC 7662 section 2.2. Inactive tokens say nothing else. */
export type IntrospectionResponse =
  | { active: false }
  | {
      active: true;
      scope: string;
      client_id: string;
      sub: string;
      aud?: string;
      iss: string;
      exp: number;
      iat: number;
      jti?: string;
      token_type: 'Bearer' | 'refresh_token';
    };

export type TokenTypeHint = 'access_token' | 'refresh_token';

const INACTIVE = { active: false } as const;

/** Lookup order: the hint first (RFC 7662 section 2.1 and RFC 7009 section 2.1), the other kind after it; the hint is never trusted. */
export function lookupOrder(hint: string | undefined): TokenTypeHint[] {
  return hint === 'refresh_token' ? ['refresh_token', 'access_token'] : ['access_token', 'refresh_token'];
}

/** A JWT has three dot-separated parts; our refresh tokens have none, so each lookup skips what cannot match. */
function looksLikeJwt(token: string): boolean {
  return token.split('.').length === 3;
}

export type FoundToken =
  | { kind: 'access_token'; claims: AccessTokenClaims; row: AccessTokenStatusRow }
  | { kind: 'refresh_token'; row: RefreshTokenStatusRow };

/**
 * The token's row when the token is ours, whatever its state: an access token is a JWT we signed
 * (signature, issuer, audience, expiry) with a recorded `jti`; a refresh token is found by its hash.
 * Tries the hinted kind first. Shared by introspection and revocation.
 */
export async function findToken(db: CommonQueryMethods, tokens: TokenIssuer, token: string, hint: string | undefined): Promise<FoundToken | undefined> {
  for (const kind of lookupOrder(hint)) {
    if (kind === 'access_token' && looksLikeJwt(token)) {
      const claims = await tokens.verifyAccessToken(token);
      if (!claims || typeof claims.jti !== 'string' || !UUID.test(claims.jti)) continue;
      const row = await findAccessTokenStatus(db, claims.jti);
      if (row) return { kind, claims, row };
    } else if (kind === 'refresh_token' && !looksLikeJwt(token)) {
      const row = await findRefreshTokenStatus(db, hashBearerValue(token));
      if (row) return { kind, row };
    }
  }
  return undefined;
}

/**
 * Unexpired at `now`, unrevoked (and for a refresh token, unrotated), with a live grant and client,
 * and a user who is not disabled. Pass the authorization server's clock (TokenIssuer.clock) where it
 * may differ from real time.
 */
export function isLive(found: FoundToken, now: Date = new Date()): boolean {
  const { row } = found;
  if (found.kind === 'access_token' && found.claims.client_id !== row.clientId) return false;
  if (found.kind === 'refresh_token' && found.row.rotatedAt !== null) return false;
  return row.revokedAt === null && row.expiresAt > now.getTime() && row.grantRevokedAt === null && row.clientRevokedAt === null && !row.userDisabled;
}

/**
 * Introspection for `requester`: a token is active only when it is ours, live (isLive), and was
 * issued to the requesting client (a client never learns anything about another client's tokens;
 * asking about one is audited as OAuthIntrospectionDenied). Every answer reads the token's row, so
 * a revocation is seen at once.
 */
export class TokenIntrospection {
  constructor(
    private readonly db: CommonQueryMethods,
    private readonly tokens: TokenIssuer,
    private readonly issuer: string,
    private readonly audit: AuditLog,
  ) {}

  async introspect(requester: OAuthClientRow, token: string, hint: string | undefined, origin: AuditEntry['origin']): Promise<IntrospectionResponse> {
    const found = await findToken(this.db, this.tokens, token, hint);
    if (!found) return INACTIVE;
    if (found.row.clientId !== requester.id) {
      await this.audit.record({
        action: 'OAuthIntrospectionDenied',
        outcome: 'failure',
        actor: { type: 'client', id: requester.id },
        clientId: requester.id,
        origin,
        details: { reason: 'issued_to_another_client', kind: found.kind, issuedTo: found.row.clientId },
      });
      return INACTIVE;
    }
    if (!isLive(found, this.tokens.clock())) return INACTIVE;
    if (found.kind === 'access_token') {
      const { claims } = found;
      return {
        active: true,
        scope: claims.scope,
        client_id: claims.client_id,
        sub: claims.sub,
        aud: claims.aud,
        iss: claims.iss,
        exp: claims.exp,
        iat: claims.iat,
        jti: claims.jti,
        token_type: 'Bearer',
      };
    }
    const { row } = found;
    return {
      active: true,
      scope: row.scopes.join(' '),
      client_id: row.clientId,
      sub: row.userId,
      iss: this.issuer,
      exp: Math.floor(row.expiresAt / 1000),
      iat: Math.floor(row.createdAt / 1000),
      token_type: 'refresh_token',
    };
  }
}
