// Token bookkeeping for the fake Google server (fakes/google.ts). No HTTP here.
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { IssuedSecrets } from './issued-secrets';

const CODE_LIFETIME_MS = 10 * 60 * 1000;
// RFC 7636 §4.1: 43-128 unreserved characters. Google rejects anything else.
const VERIFIER_SHAPE = /^[A-Za-z0-9\-._~]{43,128}$/;

export interface CodeRequest {
  redirectUri: string;
  scope: string;
  challenge?: string;
  offline: boolean;
  /** The Google account (`sub`) that approved. */
  account: string;
}

export interface IssuedTokens {
  accessToken: string;
  expiresIn: number;
  refreshToken?: string;
  scope: string;
  account: string;
  /** On a refresh: when the access token it replaces (the grant's latest) was issued and expires. */
  replaces?: { issuedAt: number; expiresAt: number };
}

export interface AccessTokenState {
  revoked: boolean;
  expired: boolean;
  account: string;
}

interface CodeRecord extends CodeRequest {
  expiresAt: number;
  used: boolean;
}

// One user consent. Revoking any token of a grant kills every token of it, as Google does.
// The fake has a single OAuth client, so grants need not remember which client they belong to.
interface Grant {
  scope: string;
  account: string;
  revoked: boolean;
  latestAccess?: AccessRecord;
}

interface RefreshRecord {
  grant: Grant;
  rotatedAway: boolean;
}

interface AccessRecord {
  grant: Grant;
  issuedAt: number;
  expiresAt: number;
}

function mint(prefix: string, bytes: number): string {
  return prefix + randomBytes(bytes).toString('base64url');
}

/** Google account ids (`sub`) are 21-digit numbers. */
export function newGoogleAccountId(): string {
  return `1${String(randomInt(1e10)).padStart(10, '0')}${String(randomInt(1e10)).padStart(10, '0')}`;
}

export function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

export class GoogleTokenStore {
  private readonly codes = new Map<string, CodeRecord>();
  private readonly refreshTokens = new Map<string, RefreshRecord>();
  private readonly accessTokens = new Map<string, AccessRecord>();
  private readonly issued: string[] = new IssuedSecrets();

  constructor(
    private readonly clock: () => number,
    private readonly accessLifetimeSeconds: number,
  ) {}

  issueCode(request: CodeRequest): string {
    const code = mint('4/', 32);
    this.codes.set(code, { ...request, expiresAt: this.clock() + CODE_LIFETIME_MS, used: false });
    this.issued.push(code);
    return code;
  }

  /** undefined means invalid_grant. */
  redeemCode(code: string, redirectUri: string, verifier: string | undefined): IssuedTokens | undefined {
    const record = this.codes.get(code);
    if (!record || record.used) return undefined;
    // Burn the code even when this attempt fails, so a stolen code cannot be retried with guessed verifiers.
    record.used = true;
    if (this.clock() >= record.expiresAt || record.redirectUri !== redirectUri) return undefined;
    if (record.challenge !== undefined) {
      if (verifier === undefined || !VERIFIER_SHAPE.test(verifier) || s256(verifier) !== record.challenge) {
        return undefined;
      }
    }
    return this.issue({ scope: record.scope, account: record.account, revoked: false }, record.offline);
  }

  /** undefined means invalid_grant. */
  refresh(refreshToken: string, rotate: boolean): IssuedTokens | undefined {
    const record = this.refreshTokens.get(refreshToken);
    if (!record || record.rotatedAway || record.grant.revoked) return undefined;
    if (rotate) record.rotatedAway = true;
    const replaced = record.grant.latestAccess;
    const tokens = this.issue(record.grant, rotate);
    return replaced ? { ...tokens, replaces: { issuedAt: replaced.issuedAt, expiresAt: replaced.expiresAt } } : tokens;
  }

  /** undefined when the token was never issued. */
  accessTokenState(accessToken: string): AccessTokenState | undefined {
    const record = this.accessTokens.get(accessToken);
    if (!record) return undefined;
    return { revoked: record.grant.revoked, expired: this.clock() >= record.expiresAt, account: record.grant.account };
  }

  /**
   * Revokes the whole grant behind a live access or refresh token (with `wholeAccount`, every grant of
   * its account); false when the token is not live.
   */
  revoke(token: string, wholeAccount = false): boolean {
    const refresh = this.refreshTokens.get(token);
    const access = this.accessTokens.get(token);
    const grant =
      refresh && !refresh.rotatedAway && !refresh.grant.revoked
        ? refresh.grant
        : access && !access.grant.revoked && this.clock() < access.expiresAt
          ? access.grant
          : undefined;
    if (!grant) return false;
    grant.revoked = true;
    if (wholeAccount) {
      for (const record of [...this.refreshTokens.values(), ...this.accessTokens.values()]) {
        if (record.grant.account === grant.account) record.grant.revoked = true;
      }
    }
    return true;
  }

  revokeAll(): void {
    for (const record of [...this.refreshTokens.values(), ...this.accessTokens.values()]) {
      record.grant.revoked = true;
    }
    for (const record of this.codes.values()) record.used = true;
  }

  /** True when the token belongs to a revoked grant. A refresh token merely rotated away is not "revoked". */
  isRevoked(token: string): boolean {
    const record = this.refreshTokens.get(token) ?? this.accessTokens.get(token);
    return record?.grant.revoked ?? false;
  }

  liveRefreshTokens(): string[] {
    return [...this.refreshTokens]
      .filter(([, record]) => !record.rotatedAway && !record.grant.revoked)
      .map(([token]) => token);
  }

  issuedSecrets(): string[] {
    return [...this.issued];
  }

  private issue(grant: Grant, withRefreshToken: boolean): IssuedTokens {
    const accessToken = mint('ya29.', 48);
    const issuedAt = this.clock();
    const record: AccessRecord = { grant, issuedAt, expiresAt: issuedAt + this.accessLifetimeSeconds * 1000 };
    this.accessTokens.set(accessToken, record);
    grant.latestAccess = record;
    this.issued.push(accessToken);
    const tokens: IssuedTokens = { accessToken, expiresIn: this.accessLifetimeSeconds, scope: grant.scope, account: grant.account };
    if (withRefreshToken) {
      const refreshToken = mint('1//', 48);
      this.refreshTokens.set(refreshToken, { grant, rotatedAway: false });
      this.issued.push(refreshToken);
      tokens.refreshToken = refreshToken;
    }
    return tokens;
  }
}
