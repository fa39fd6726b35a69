import type { CommonQueryMethods } from 'slonik';
import { findAccessTokenStatus, findRefreshTokenStatus } from '../../db/queries/oauth-tokens';
import type { OAuthClientRow } from '../../db/queries/oauth-clients';
import { hashBearerValue } from '../secrets';
import type { TokenIssuer } from './token-issuer';

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
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Lookup order: the hint first (RFC 7662 section 2.1 and RFC 7009 section 2.1), the other kind after it; the hint is never trusted. */
export function lookupOrder(hint: string | undefined): TokenTypeHint[] {
  return hint === 'refresh_token' ? ['refresh_token', 'access_token'] : ['access_token', 'refresh_token'];
}

/** A JWT has three dot-separated parts; our refresh tokens have none, so each lookup skips what cannot match. */
function looksLikeJwt(token: string): boolean {
  return token.split('.').length === 3;
}

/**
 * Introspection for `requester`: a token is active only when it is ours, unexpired, unrevoked,
 * its grant and client are live, and it was issued to the requesting client (a client never
 * learns anything about another client's tokens). Every answer reads the database, so a
 * revocation is seen at once.
 */
export class TokenIntrospection {
  constructor(
    private readonly db: CommonQueryMethods,
    private readonly tokens: TokenIssuer,
    private readonly issuer: string,
  ) {}

  async introspect(requester: OAuthClientRow, token: string, hint: string | undefined): Promise<IntrospectionResponse> {
    for (const kind of lookupOrder(hint)) {
      const answer = kind === 'access_token' ? await this.accessToken(requester, token) : await this.refreshToken(requester, token);
      if (answer) return answer;
    }
    return INACTIVE;
  }

  /** undefined: not an access token of ours; INACTIVE: ours, but not active for this requester. */
  private async accessToken(requester: OAuthClientRow, token: string): Promise<IntrospectionResponse | undefined> {
    if (!looksLikeJwt(token)) return undefined;
    const claims = await this.tokens.verifyAccessToken(token);
    if (!claims || typeof claims.jti !== 'string' || !UUID.test(claims.jti)) return undefined;
    const row = await findAccessTokenStatus(this.db, claims.jti);
    if (!row) return undefined;
    const live =
      row.clientId === requester.id &&
      claims.client_id === row.clientId &&
      row.revokedAt === null &&
      row.expiresAt > Date.now() &&
      row.grantRevokedAt === null &&
      row.clientRevokedAt === null;
    if (!live) return INACTIVE;
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

  private async refreshToken(requester: OAuthClientRow, token: string): Promise<IntrospectionResponse | undefined> {
    if (looksLikeJwt(token)) return undefined;
    const row = await findRefreshTokenStatus(this.db, hashBearerValue(token));
    if (!row) return undefined;
    const live =
      row.clientId === requester.id &&
      row.rotatedAt === null &&
      row.revokedAt === null &&
      row.expiresAt > Date.now() &&
      row.grantRevokedAt === null &&
      row.clientRevokedAt === null;
    if (!live) return INACTIVE;
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
