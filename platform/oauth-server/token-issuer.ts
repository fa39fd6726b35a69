import { randomUUID } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { CommonQueryMethods } from 'slonik';
import { insertAccessToken, insertRefreshToken, type TokenAuthentication } from '../../db/queries/oauth-tokens';
import type { OAuthClientRow } from '../../db/queries/oauth-clients';
import { hashBearerValue, randomToken } from '../secrets';
import { signIdToken } from './id-tokens';
import type { SigningKeys } from './signing-keys';

/** RFC 6749 section 5.1. */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token?: string;
  scope: string;
  /** OpenID Connect: when the scope has `openid`. */
  id_token?: string;
}

/** The RFC 9068 claims of our JWT access tokens. */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string;
  client_id: string;
  scope: string;
  jti: string;
  iat: number;
  exp: number;
}

export interface TokenIssuerSettings {
  issuer: string;
  audience: string;
  accessTokenSeconds: number;
  refreshTokenSeconds: number;
  deviceRefreshTokenSeconds: number;
  /** ID_TOKEN_TTL_SECONDS. */
  idTokenSeconds: number;
}

export interface TokenSubject {
  client: OAuthClientRow;
  /** The user, or null for client_credentials (the client acts for itself). */
  userId: string | null;
  grantId: string | null;
  /** The authorization code's token family; null for client_credentials. */
  familyId: string | null;
  /** The access token's scopes. */
  scopes: string[];
  /** The refresh token's scopes when they differ from the access token's (a narrowing refresh keeps the original scope, RFC 6749 section 6). */
  refreshTokenScopes?: string[];
  /** The sign-in the grant's tokens began with; its refresh token keeps it for later id_tokens. */
  authentication?: TokenAuthentication;
}

/** What was minted, with what the rotation grace of voice clients keeps of it. */
export interface MintedTokens {
  response: TokenResponse;
  /** The access token's `exp`, in epoch seconds. */
  accessTokenExpiresAt: number;
  /** The new refresh token's row, when one was issued. */
  refreshTokenId: string | undefined;
}

/**
 * Mints access tokens (RS256 JWTs, RFC 9068 profile, each recorded by `jti` so revocation is seen at
 * once) and opaque refresh tokens (random, stored only as hashes). Its clock is the authorization
 * server's notion of now (tests of long lifecycles hand in a simulated one).
 */
export class TokenIssuer {
  constructor(
    private readonly keys: SigningKeys,
    private readonly settings: TokenIssuerSettings,
    readonly clock: () => Date = () => new Date(),
  ) {}

  async issue(db: CommonQueryMethods, subject: TokenSubject, withRefreshToken: boolean): Promise<TokenResponse> {
    return (await this.mint(db, subject, withRefreshToken)).response;
  }

  /**
   * Like issue, with the records behind the answer. A voice client's refresh token lives
   * DEVICE_REFRESH_TOKEN_TTL_SECONDS from this issue: each rotation slides the device's lifetime.
   */
  async mint(db: CommonQueryMethods, subject: TokenSubject, withRefreshToken: boolean): Promise<MintedTokens> {
    const issuedAt = this.clock();
    const now = Math.floor(issuedAt.getTime() / 1000);
    const expiresAt = now + this.settings.accessTokenSeconds;
    const jti = randomUUID();
    const key = await this.keys.activeKey(db);
    const scope = subject.scopes.join(' ');
    const accessToken = await new SignJWT({ client_id: subject.client.id, scope })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt' })
      .setIssuer(this.settings.issuer)
      .setSubject(subject.userId ?? subject.client.id)
      .setAudience(this.settings.audience)
      .setJti(jti)
      .setIssuedAt(now)
      .setExpirationTime(expiresAt)
      .sign(key.privateKey);
    await insertAccessToken(db, {
      jti,
      clientId: subject.client.id,
      userId: subject.userId,
      grantId: subject.grantId,
      familyId: subject.familyId,
      scopes: subject.scopes,
      issuedAt: now * 1000,
      expiresAt: expiresAt * 1000,
    });

    const response: TokenResponse = { access_token: accessToken, token_type: 'Bearer', expires_in: this.settings.accessTokenSeconds, scope };
    let refreshTokenId: string | undefined;
    if (withRefreshToken && subject.userId && subject.grantId && subject.familyId) {
      const refreshToken = randomToken();
      const lifetime = subject.client.kind === 'voice' ? this.settings.deviceRefreshTokenSeconds : this.settings.refreshTokenSeconds;
      refreshTokenId = await insertRefreshToken(db, {
        tokenHash: hashBearerValue(refreshToken),
        familyId: subject.familyId,
        clientId: subject.client.id,
        userId: subject.userId,
        grantId: subject.grantId,
        scopes: subject.refreshTokenScopes ?? subject.scopes,
        createdAt: issuedAt,
        expiresAt: new Date((now + lifetime) * 1000),
        ...subject.authentication,
      });
      response.refresh_token = refreshToken;
    }
    return { response, accessTokenExpiresAt: expiresAt, refreshTokenId };
  }

  /** An OpenID Connect id_token for the user and client, with the sign-in it stands for. */
  async idToken(
    db: CommonQueryMethods,
    subject: { client: OAuthClientRow; userId: string; nonce: string | null; authentication: TokenAuthentication },
  ): Promise<string> {
    return signIdToken(await this.keys.activeKey(db), {
      issuer: this.settings.issuer,
      clientId: subject.client.id,
      userId: subject.userId,
      nonce: subject.nonce,
      sessionId: subject.authentication.sessionId,
      authTime: subject.authentication.authTime,
      now: this.clock(),
      lifetimeSeconds: this.settings.idTokenSeconds,
    });
  }

  /** The claims of a well-formed, unexpired access token we signed; null for anything else. */
  async verifyAccessToken(token: string): Promise<AccessTokenClaims | null> {
    const verify = async (fresh: boolean) =>
      jwtVerify(token, await this.keys.verificationKeys({ fresh }), {
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        typ: 'at+jwt',
        algorithms: ['RS256'],
        currentDate: this.clock(),
        requiredClaims: ['sub', 'jti', 'exp', 'iat', 'client_id', 'scope'],
      });
    try {
      try {
        return (await verify(false)).payload as unknown as AccessTokenClaims;
      } catch (error) {
        // The key set is cached briefly: a key another process created since is fetched before giving up.
        if (!(error instanceof joseErrors.JWKSNoMatchingKey)) throw error;
        return (await verify(true)).payload as unknown as AccessTokenClaims;
      }
    } catch (error) {
      if (error instanceof joseErrors.JOSEError) return null;
      throw error;
    }
  }
}
