// Machine-account tokens for the fake Booking.com (fakes/booking.ts): signed JWTs, the hourly
// issuing limit, and their verification on the OTA endpoints. No HTTP here.
import { randomInt, randomUUID } from 'node:crypto';
import { errors as joseErrors, generateKeyPair, jwtVerify, SignJWT, type CryptoKey } from 'jose';
import { IssuedSecrets } from './issued-secrets';

const ISSUER = 'urn://connectivity-modern-auth/v1';
const HOUR_MS = 3600 * 1000;

export type TokenCheck = 'valid' | 'expired' | 'invalid';

export class BookingTokenIssuer {
  private readonly issuedAt: number[] = [];
  private readonly issued: string[] = new IssuedSecrets();
  private readonly machineAccountId = String(randomInt(10_000, 99_999));

  private constructor(
    private readonly keys: { privateKey: CryptoKey; publicKey: CryptoKey },
    private readonly clock: () => number,
    private readonly settings: { clientId: string; lifetimeSeconds: number; perHour: number },
  ) {}

  static async create(clock: () => number, settings: { clientId: string; lifetimeSeconds: number; perHour: number }): Promise<BookingTokenIssuer> {
    return new BookingTokenIssuer(await generateKeyPair('ES256'), clock, settings);
  }

  /** Booking.com issues at most `perHour` tokens in any hour; undefined means the limit is reached. */
  async issue(): Promise<string | undefined> {
    const now = this.clock();
    if (this.issuedAt.filter((at) => at > now - HOUR_MS).length >= this.settings.perHour) return undefined;
    const seconds = Math.floor(now / 1000);
    const jwt = await new SignJWT({
      test: false,
      machine_account_id: this.machineAccountId,
      provider_id: '1507',
      client_id: this.settings.clientId,
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
      .setSubject('connectivity-auth-proxy')
      .setIssuer(ISSUER)
      .setAudience('')
      .setJti(randomUUID())
      .setIssuedAt(seconds)
      .setExpirationTime(seconds + this.settings.lifetimeSeconds)
      .sign(this.keys.privateKey);
    this.issuedAt.push(now);
    this.issued.push(jwt);
    return jwt;
  }

  async check(jwt: string): Promise<TokenCheck> {
    try {
      await jwtVerify(jwt, this.keys.publicKey, { issuer: ISSUER, currentDate: new Date(this.clock()) });
      return 'valid';
    } catch (error) {
      return error instanceof joseErrors.JWTExpired ? 'expired' : 'invalid';
    }
  }

  issuedTokens(): string[] {
    return [...this.issued];
  }
}
