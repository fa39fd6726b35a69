// Token bookkeeping of the fake Microsoft identity platform (fakes/microsoft.ts). No HTTP here.
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { IssuedSecrets } from './issued-secrets';

const CODE_LIFETIME_MS = 10 * 60 * 1000;
/** Microsoft refresh tokens die after 90 days unused. */
const REFRESH_TOKEN_INACTIVITY_MS = 90 * 24 * 3600 * 1000;
const OIDC_SCOPES = new Set(['openid', 'profile', 'email']);
const VERIFIER_SHAPE = /^[A-Za-z0-9\-._~]{43,128}$/;

/** The AADSTS errors the fake answers with: real codes, statuses and messages (trace lines are added when sent). */
export const AADSTS = {
  70000: { status: 400, error: 'invalid_grant', message: 'Provided grant is invalid or malformed.' },
  70008: {
    status: 400,
    error: 'invalid_grant',
    message: 'The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.',
  },
  700082: { status: 400, error: 'invalid_grant', message: 'The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive for 90.00:00:00.' },
  50173: {
    status: 400,
    error: 'invalid_grant',
    message: 'The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.',
  },
  54005: { status: 400, error: 'invalid_grant', message: 'OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.' },
  501481: { status: 400, error: 'invalid_grant', message: 'The Code_Verifier does not match the code_challenge supplied in the authorization request.' },
  500112: { status: 400, error: 'invalid_grant', message: 'The reply address does not match the reply address provided when requesting Authorization code.' },
  9002313: { status: 400, error: 'invalid_grant', message: 'Invalid request. Request is malformed or invalid.' },
  7000215: {
    status: 401,
    error: 'invalid_client',
    message: "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{clientId}'.",
  },
  7000222: { status: 401, error: 'invalid_client', message: "The provided client secret keys for app '{clientId}' are expired. Create new keys for your app, or consider using certificate credentials." },
  700016: { status: 400, error: 'unauthorized_client', message: "Application with identifier '{clientId}' was not found in the directory 'common'." },
  900144: { status: 400, error: 'invalid_request', message: "The request body must contain the following parameter: '{parameter}'." },
  70003: { status: 400, error: 'unsupported_grant_type', message: "The app requested an unsupported grant type '{grantType}'." },
  90033: { status: 503, error: 'temporarily_unavailable', message: 'A transient error has occurred. Please try again.' },
} as const;
export type AadstsCode = keyof typeof AADSTS;

export interface IssuedTokens {
  accessToken: string;
  refreshToken: string;
  idToken?: string;
  expiresIn: number;
  scope: string;
}

interface CodeRecord {
  oid: string;
  redirectUri: string;
  scope: string;
  challenge?: string;
  expiresAt: number;
  used: boolean;
}

/** One consent of one account. */
interface Grant {
  oid: string;
  scope: string;
  revoked: boolean;
}

interface RefreshRecord {
  grant: Grant;
  issuedAt: number;
  /** When its successor was issued: from then on it lives only for the rotation grace. */
  supersededAt?: number;
}

export type Refusal = { aadsts: AadstsCode; vars?: Record<string, string> };

function mint(prefix: string, bytes: number): string {
  return prefix + randomBytes(bytes).toString('base64url');
}

export class MicrosoftTokenStore {
  private readonly codes = new Map<string, CodeRecord>();
  private readonly refreshTokens = new Map<string, RefreshRecord>();
  private readonly accessTokens = new Map<string, { grant: Grant; expiresAt: number }>();
  private readonly newest = new Map<string, string>();
  private readonly issued: string[] = new IssuedSecrets();
  private readonly signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;

  constructor(
    private readonly clock: () => number,
    private readonly settings: { clientId: string; issuer: string; tenantId: string; accessTokenLifetimeSeconds: number; rotationGraceMs: number },
  ) {}

  issueCode(request: Omit<CodeRecord, 'expiresAt' | 'used'>): string {
    const code = mint('M.C5', 48);
    this.codes.set(code, { ...request, expiresAt: this.clock() + CODE_LIFETIME_MS, used: false });
    this.issued.push(code);
    return code;
  }

  async redeemCode(code: string, redirectUri: string, verifier: string | undefined): Promise<IssuedTokens | Refusal> {
    const record = this.codes.get(code);
    if (!record) return { aadsts: 9002313 };
    if (record.used) return { aadsts: 54005 };
    record.used = true;
    if (this.clock() >= record.expiresAt) return { aadsts: 70008 };
    if (record.redirectUri !== redirectUri) return { aadsts: 500112 };
    if (record.challenge !== undefined) {
      const matches = verifier !== undefined && VERIFIER_SHAPE.test(verifier) && createHash('sha256').update(verifier).digest('base64url') === record.challenge;
      if (!matches) return { aadsts: 501481 };
    }
    return this.issue({ oid: record.oid, scope: record.scope, revoked: false });
  }

  /** Whether a refresh token is the newest of its account, or one its successor superseded. */
  generation(refreshToken: string): 'newest' | 'superseded' | 'unknown' {
    const record = this.refreshTokens.get(refreshToken);
    if (!record) return 'unknown';
    return this.newest.get(record.grant.oid) === refreshToken ? 'newest' : 'superseded';
  }

  /** Every successful refresh rotates: a new refresh token, the old one lives on for the grace only. */
  async refresh(refreshToken: string): Promise<IssuedTokens | Refusal> {
    const record = this.refreshTokens.get(refreshToken);
    const now = this.clock();
    if (!record) return { aadsts: 9002313 };
    if (record.grant.revoked) return { aadsts: 50173 };
    if (now - record.issuedAt >= REFRESH_TOKEN_INACTIVITY_MS) return { aadsts: 700082, vars: { issued: new Date(record.issuedAt).toISOString() } };
    if (record.supersededAt !== undefined && now >= record.supersededAt + this.settings.rotationGraceMs) return { aadsts: 70000 };
    record.supersededAt ??= now;
    return this.issue(record.grant);
  }

  /** The account a live access token speaks for; `expired` for one past its lifetime. */
  accessTokenAccount(accessToken: string): { oid: string } | 'expired' | undefined {
    const record = this.accessTokens.get(accessToken);
    if (!record || record.grant.revoked) return undefined;
    return this.clock() >= record.expiresAt ? 'expired' : { oid: record.grant.oid };
  }

  revokeGrants(oid: string): void {
    for (const record of this.refreshTokens.values()) if (record.grant.oid === oid) record.grant.revoked = true;
  }

  /** Refresh tokens that would still work now (rotated ones within their grace included). */
  liveRefreshTokens(oid?: string): string[] {
    const now = this.clock();
    return [...this.refreshTokens]
      .filter(([, record]) => (oid === undefined || record.grant.oid === oid) && !record.grant.revoked)
      .filter(([, record]) => now - record.issuedAt < REFRESH_TOKEN_INACTIVITY_MS)
      .filter(([, record]) => record.supersededAt === undefined || now < record.supersededAt + this.settings.rotationGraceMs)
      .map(([token]) => token);
  }

  /** The refresh token most recently issued to the account: the one a client must hold. */
  newestRefreshToken(oid: string): string | undefined {
    return this.newest.get(oid);
  }

  issuedSecrets(): string[] {
    return [...this.issued];
  }

  private async issue(grant: Grant): Promise<IssuedTokens> {
    const now = this.clock();
    const accessToken = mint('EwB', 96);
    const refreshToken = mint('M.C5', 96);
    this.accessTokens.set(accessToken, { grant, expiresAt: now + this.settings.accessTokenLifetimeSeconds * 1000 });
    this.refreshTokens.set(refreshToken, { grant, issuedAt: now });
    this.newest.set(grant.oid, refreshToken);
    const scopes = grant.scope.split(' ');
    const idToken = scopes.includes('openid') ? await this.idToken(grant.oid, now) : undefined;
    this.issued.push(accessToken, refreshToken, ...(idToken ? [idToken] : []));
    return {
      accessToken,
      refreshToken,
      ...(idToken ? { idToken } : {}),
      expiresIn: this.settings.accessTokenLifetimeSeconds,
      // Microsoft lists what the access token may do, Graph scopes by their full name; offline_access is not among it.
      scope: scopes
        .filter((scope) => scope !== 'offline_access')
        .map((scope) => (OIDC_SCOPES.has(scope) || scope.includes('/') ? scope : `https://graph.microsoft.com/${scope}`))
        .join(' '),
    };
  }

  private idToken(oid: string, now: number): Promise<string> {
    const seconds = Math.floor(now / 1000);
    return new SignJWT({ ver: '2.0', oid, tid: this.settings.tenantId, name: 'Fake Outlook User', preferred_username: `${oid.slice(0, 8)}@example.com` })
      .setProtectedHeader({ alg: 'RS256', kid: 'fake-microsoft', typ: 'JWT' })
      .setIssuer(`${this.settings.issuer}/${this.settings.tenantId}/v2.0`)
      .setAudience(this.settings.clientId)
      .setSubject(createHash('sha256').update(`${oid}:${this.settings.clientId}`).digest('base64url'))
      .setIssuedAt(seconds)
      .setNotBefore(seconds)
      .setExpirationTime(seconds + 3600)
      .setJti(randomUUID())
      .sign(this.signingKey);
  }
}
