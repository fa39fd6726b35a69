// Token bookkeeping for the fake Airbnb (fakes/airbnb.ts). No HTTP here.
import { randomBytes } from 'node:crypto';
import { IssuedSecrets } from './issued-secrets';

const CODE_LIFETIME_MS = 10 * 60 * 1000;

export interface IssuedTokens {
  accessToken: string;
  refreshToken: string;
  /** Unix seconds, as Airbnb answers it. */
  expiresAt: number;
  userId: string;
}

interface TokenCheck {
  valid: boolean;
  expiresAt: number;
  userId: string;
}

// One host's consent. Deleting it through any of its tokens ends every token of it, as Airbnb does.
interface Authorization {
  userId: string;
  revoked: boolean;
}

interface CodeRecord {
  userId: string;
  expiresAt: number;
  used: boolean;
}

interface RefreshRecord {
  authorization: Authorization;
  /** When a rotation replaced it: from then on it works for the rotation grace only. */
  rotatedAt?: number;
}

interface AccessRecord {
  authorization: Authorization;
  expiresAt: number;
}

function mint(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

export class AirbnbTokenStore {
  private readonly codes = new Map<string, CodeRecord>();
  private readonly refreshTokens = new Map<string, RefreshRecord>();
  private readonly accessTokens = new Map<string, AccessRecord>();
  private readonly issued: string[] = new IssuedSecrets();

  constructor(
    private readonly clock: () => number,
    private readonly accessLifetimeSeconds: number,
    private readonly rotationGraceMs: number,
  ) {}

  issueCode(userId: string): string {
    const code = mint(16);
    this.codes.set(code, { userId, expiresAt: this.clock() + CODE_LIFETIME_MS, used: false });
    this.issued.push(code);
    return code;
  }

  /** undefined means invalid_grant. */
  redeemCode(code: string): IssuedTokens | undefined {
    const record = this.codes.get(code);
    if (!record || record.used) return undefined;
    record.used = true;
    if (this.clock() >= record.expiresAt) return undefined;
    return this.issue({ userId: record.userId, revoked: false }, undefined);
  }

  /** `rotate` (reset_refresh_token=1): a new refresh token replaces the presented one, which then lives for the grace only. */
  refresh(refreshToken: string, rotate: boolean): IssuedTokens | undefined {
    const record = this.refreshTokens.get(refreshToken);
    if (!record || !this.works(record)) return undefined;
    if (rotate) record.rotatedAt ??= this.clock();
    return this.issue(record.authorization, rotate ? undefined : refreshToken);
  }

  /** GET /v2/oauth2/authorizations/{token}: undefined when the token was never issued. */
  check(token: string): TokenCheck | undefined {
    const access = this.accessTokens.get(token);
    if (access) {
      return { valid: !access.authorization.revoked && this.clock() < access.expiresAt, expiresAt: Math.floor(access.expiresAt / 1000), userId: access.authorization.userId };
    }
    const refresh = this.refreshTokens.get(token);
    if (refresh) return { valid: this.works(refresh), expiresAt: 0, userId: refresh.authorization.userId };
    return undefined;
  }

  /** The host an API call acts for, or why it may not. */
  accessTokenState(accessToken: string): { userId: string; expired: boolean; revoked: boolean } | undefined {
    const record = this.accessTokens.get(accessToken);
    if (!record) return undefined;
    return { userId: record.authorization.userId, expired: this.clock() >= record.expiresAt, revoked: record.authorization.revoked };
  }

  /** Ends the authorization behind a live access or refresh token; false when there is none (Airbnb: 404). */
  revoke(token: string): boolean {
    const authorization = this.refreshTokens.get(token)?.authorization ?? this.accessTokens.get(token)?.authorization;
    if (!authorization || authorization.revoked) return false;
    const refresh = this.refreshTokens.get(token);
    if (refresh && !this.works(refresh)) return false;
    authorization.revoked = true;
    return true;
  }

  /** Refresh tokens that would still work: the newest of each live authorization. */
  liveRefreshTokens(): string[] {
    return [...this.refreshTokens].filter(([, record]) => record.rotatedAt === undefined && !record.authorization.revoked).map(([token]) => token);
  }

  private works(record: RefreshRecord): boolean {
    return !record.authorization.revoked && (record.rotatedAt === undefined || this.clock() < record.rotatedAt + this.rotationGraceMs);
  }

  issuedSecrets(): string[] {
    return [...this.issued];
  }

  private issue(authorization: Authorization, keptRefreshToken: string | undefined): IssuedTokens {
    const accessToken = mint(24);
    const expiresAt = this.clock() + this.accessLifetimeSeconds * 1000;
    this.accessTokens.set(accessToken, { authorization, expiresAt });
    this.issued.push(accessToken);
    let refreshToken = keptRefreshToken;
    if (refreshToken === undefined) {
      refreshToken = mint(24);
      this.refreshTokens.set(refreshToken, { authorization });
      this.issued.push(refreshToken);
    }
    return { accessToken, refreshToken, expiresAt: Math.floor(expiresAt / 1000), userId: authorization.userId };
  }
}
