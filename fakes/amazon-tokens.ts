// Login with Amazon's bookkeeping for the fake Amazon (fakes/amazon.ts): AcceptGrant codes, refresh and
// access tokens of Amazon customers who enabled the skill. No HTTP here.
import { randomBytes, randomUUID } from 'node:crypto';
import { IssuedSecrets } from './issued-secrets';

export type FakeAlexaRegion = 'NA' | 'EU' | 'FE';

export interface AmazonCustomer {
  id: string;
  region: FakeAlexaRegion;
  /** The customer disabled the skill: the gateway answers SKILL_DISABLED_EXCEPTION. */
  skillDisabled: boolean;
}

export interface IssuedTokens {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

export type AccessTokenCheck = { customer: AmazonCustomer } | 'expired' | 'unknown';

interface Grant {
  customer: AmazonCustomer;
  revoked: boolean;
}

function mint(prefix: string): string {
  return prefix + randomBytes(48).toString('base64url');
}

export class AmazonTokenStore {
  private readonly customers = new Map<string, AmazonCustomer>();
  private readonly codes = new Map<string, { grant: Grant; expiresAt: number; used: boolean }>();
  private readonly refreshTokens = new Map<string, { grant: Grant; replaced: boolean }>();
  private readonly accessTokens = new Map<string, { grant: Grant; expiresAt: number }>();
  private readonly issued: string[] = new IssuedSecrets();

  constructor(
    private readonly clock: () => number,
    private readonly settings: { codeLifetimeSeconds: number; accessTokenLifetimeSeconds: number; rotateRefreshTokens: () => boolean },
  ) {}

  /** What Alexa puts into an AcceptGrant directive: a new grant of a customer (a new one unless named). */
  issueGrantCode(options: { region?: FakeAlexaRegion; customerId?: string } = {}): { code: string; customerId: string } {
    const customerId = options.customerId ?? `amzn1.account.${randomUUID()}`;
    const customer = this.customers.get(customerId) ?? { id: customerId, region: options.region ?? 'NA', skillDisabled: false };
    customer.skillDisabled = false;
    this.customers.set(customerId, customer);
    const code = mint('ANa');
    this.codes.set(code, { grant: { customer, revoked: false }, expiresAt: this.clock() + this.settings.codeLifetimeSeconds * 1000, used: false });
    this.issued.push(code);
    return { code, customerId };
  }

  /** Codes work once, and only for minutes. */
  redeemCode(code: string): IssuedTokens | undefined {
    const record = this.codes.get(code);
    if (!record || record.used || this.clock() >= record.expiresAt) return undefined;
    record.used = true;
    return this.issue(record.grant, undefined);
  }

  /** LWA refresh tokens do not expire; unless rotation is on, the same one comes back. */
  refresh(refreshToken: string): IssuedTokens | undefined {
    const record = this.refreshTokens.get(refreshToken);
    if (!record || record.replaced || record.grant.revoked) return undefined;
    if (this.settings.rotateRefreshTokens()) {
      record.replaced = true;
      return this.issue(record.grant, undefined);
    }
    return this.issue(record.grant, refreshToken);
  }

  checkAccessToken(accessToken: string): AccessTokenCheck {
    const record = this.accessTokens.get(accessToken);
    if (!record) return 'unknown';
    // The gateway tells a customer who disabled the skill apart from a bad token.
    if (record.grant.customer.skillDisabled) return { customer: record.grant.customer };
    if (record.grant.revoked) return 'unknown';
    return this.clock() >= record.expiresAt ? 'expired' : { customer: record.grant.customer };
  }

  /** The customer disabled the skill (or everyone did): Alexa revokes its Amazon tokens too. */
  disableSkill(customerId?: string): void {
    for (const customer of this.customers.values()) if (customerId === undefined || customer.id === customerId) customer.skillDisabled = true;
    this.revoke(customerId);
  }

  revoke(customerId?: string): void {
    for (const { grant } of [...this.refreshTokens.values(), ...this.accessTokens.values()]) {
      if (customerId === undefined || grant.customer.id === customerId) grant.revoked = true;
    }
  }

  customer(customerId: string): AmazonCustomer | undefined {
    return this.customers.get(customerId);
  }

  /** Refresh tokens that would work now. */
  liveRefreshTokens(customerId?: string): string[] {
    return [...this.refreshTokens]
      .filter(([, record]) => !record.replaced && !record.grant.revoked && (customerId === undefined || record.grant.customer.id === customerId))
      .map(([token]) => token);
  }

  issuedSecrets(): string[] {
    return [...this.issued];
  }

  private issue(grant: Grant, keptRefreshToken: string | undefined): IssuedTokens {
    const accessToken = mint('Atza|');
    const refreshToken = keptRefreshToken ?? mint('Atzr|');
    this.accessTokens.set(accessToken, { grant, expiresAt: this.clock() + this.settings.accessTokenLifetimeSeconds * 1000 });
    if (!keptRefreshToken) this.refreshTokens.set(refreshToken, { grant, replaced: false });
    this.issued.push(accessToken, ...(keptRefreshToken ? [] : [refreshToken]));
    return { accessToken, refreshToken, expiresIn: this.settings.accessTokenLifetimeSeconds };
  }
}
