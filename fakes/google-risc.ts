// Google's signing keys in the fake Google (fakes/google.ts): they sign id_tokens and the Cross-Account
// Protection (RISC) security event tokens the fake sends to a receiver, as Google's transmitter does.
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { assertLoopback } from './loopback';

/** Google's OpenID Connect issuer (id_tokens) and its RISC issuer, which has the trailing slash. */
export const GOOGLE_ID_TOKEN_ISSUER = 'https://accounts.google.com';
export const GOOGLE_RISC_ISSUER = 'https://accounts.google.com/';

export const RISC_EVENT_TYPES = {
  'token-revoked': 'https://schemas.openid.net/secevent/oauth/event-type/token-revoked',
  'tokens-revoked': 'https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked',
  'sessions-revoked': 'https://schemas.openid.net/secevent/risc/event-type/sessions-revoked',
  'account-disabled': 'https://schemas.openid.net/secevent/risc/event-type/account-disabled',
  'account-enabled': 'https://schemas.openid.net/secevent/risc/event-type/account-enabled',
  'account-credential-change-required': 'https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required',
  verification: 'https://schemas.openid.net/secevent/risc/event-type/verification',
} as const;
export type RiscEventName = keyof typeof RISC_EVENT_TYPES;

export interface SecurityEventOptions {
  /** Where to POST; defaults to the receiver registered with `registerRiscReceiver` (Google's stream:update). */
  receiverUrl?: string;
  jti?: string;
  /** The `iat`, in seconds since the epoch; defaults to now (by the fake's clock). */
  issuedAt?: number;
  issuer?: string;
  audience?: string;
  /** `untrusted`: signed by a key that is not in the JWKS but claims the same kid, as a forger would. */
  signer?: 'google' | 'untrusted';
  /** Replaces the `iss-sub` subject (e.g. an `oauth_token` subject for token-revoked). */
  subject?: Record<string, string>;
  reason?: string;
  /** The `state` of a verification event. */
  state?: string;
  contentType?: string;
}

export interface SecurityEventDelivery {
  jti: string;
  token: string;
  status: number;
  body: string;
}

interface KeyPair {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function keyPair(kid: string): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

export class FakeGoogleKeys {
  private receiverUrl: string | undefined;

  private constructor(
    private readonly google: KeyPair,
    private readonly forger: KeyPair,
    private readonly clientId: string,
    private readonly clock: () => number,
  ) {}

  static async create(clientId: string, clock: () => number): Promise<FakeGoogleKeys> {
    const kid = randomUUID();
    return new FakeGoogleKeys(await keyPair(kid), await keyPair(kid), clientId, clock);
  }

  /** What Google publishes at https://www.googleapis.com/oauth2/v3/certs. */
  jwks(): { keys: JWK[] } {
    return { keys: [this.google.publicJwk] };
  }

  idToken(account: string): Promise<string> {
    const issuedAt = Math.floor(this.clock() / 1000);
    return this.sign({ iss: GOOGLE_ID_TOKEN_ISSUER, aud: this.clientId, azp: this.clientId, sub: account, iat: issuedAt, exp: issuedAt + 3600 }, 'google', 'JWT');
  }

  registerRiscReceiver(url: string): void {
    assertLoopback(url);
    this.receiverUrl = url;
  }

  /** A security event about one Google account, signed and POSTed like Google's push delivery (no `exp`). */
  async sendSecurityEvent(account: string, event: RiscEventName, options: SecurityEventOptions = {}): Promise<SecurityEventDelivery> {
    const receiverUrl = options.receiverUrl ?? this.receiverUrl;
    if (receiverUrl === undefined) throw new Error('no RISC receiver registered');
    assertLoopback(receiverUrl);
    const jti = options.jti ?? randomUUID().replace(/-/g, '');
    const subject = options.subject ?? { subject_type: 'iss-sub', iss: GOOGLE_RISC_ISSUER, sub: account };
    const claims = {
      iss: options.issuer ?? GOOGLE_RISC_ISSUER,
      aud: options.audience ?? this.clientId,
      iat: options.issuedAt ?? Math.floor(this.clock() / 1000),
      jti,
      events: {
        [RISC_EVENT_TYPES[event]]: event === 'verification'
          ? { state: options.state ?? '' }
          : { subject, ...(options.reason === undefined ? {} : { reason: options.reason }) },
      },
    };
    const token = await this.sign(claims, options.signer ?? 'google', 'secevent+jwt');
    const response = await fetch(receiverUrl, { method: 'POST', headers: { 'content-type': options.contentType ?? 'application/secevent+jwt' }, body: token });
    return { jti, token, status: response.status, body: await response.text() };
  }

  private sign(claims: JWTPayload, signer: 'google' | 'untrusted', typ: string): Promise<string> {
    const key = signer === 'google' ? this.google : this.forger;
    return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: key.kid, typ }).sign(key.privateKey);
  }
}
