import { decodeJwt } from 'jose';
import { z } from 'zod';
import type { BookingSettings } from '../config';
import { providerFetch, ProviderError } from './provider-error';
import type { ProviderTokens, TokenRequestOptions } from './oauth-tokens';
import type { MachineAccountAdapter, RevocationOutcome } from './provider';

const PROVIDER = 'Booking.com';

/** A Booking.com machine account: what the user pastes from the Connectivity Portal, stored encrypted as one JSON text. */
export interface BookingCredentials {
  clientId: string;
  clientSecret: string;
}

const storedCredentials = z.object({ clientId: z.string().min(1), clientSecret: z.string().min(1) });

export function serializeBookingCredentials(credentials: BookingCredentials): string {
  return JSON.stringify({ clientId: credentials.clientId, clientSecret: credentials.clientSecret });
}

/**
 * The token exchange's wire shape, in one place: the documented request is JSON `{client_id,
 * client_secret}` and the answer `{jwt, ruid}`. The answer says nothing of the lifetime (one hour),
 * so it is read from the JWT's own `exp`.
 */
const exchangeRequest = (credentials: BookingCredentials) => ({ client_id: credentials.clientId, client_secret: credentials.clientSecret });
const exchangeResponse = z.object({ jwt: z.string().min(1), ruid: z.string().optional() });
const jwtClaims = z.object({
  exp: z.number().int().positive(),
  iat: z.number().int().positive().optional(),
  machine_account_id: z.union([z.string(), z.number()]).optional(),
});

/**
 * Booking.com Connectivity token-based authentication (shared/protocols.md): machine-account
 * credentials are exchanged for a JWT valid one hour, at most 30 per hour. The credentials play the
 * refresh token's part; nothing can be revoked upstream.
 */
export class BookingAdapter implements MachineAccountAdapter {
  readonly id = 'booking-com' as const;
  readonly kind = 'machine-account' as const;
  readonly supportsRevocation = false;
  readonly revocationEndsAccountGrant = false;
  readonly rotatesRefreshTokens = false;
  readonly scopes: string[] = [];

  constructor(private readonly settings: BookingSettings) {}

  async refresh(serializedCredentials: string, options: TokenRequestOptions = {}): Promise<ProviderTokens> {
    const credentials = parseCredentials(serializedCredentials);
    const response = await providerFetch(
      PROVIDER,
      this.settings.authUrl,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(exchangeRequest(credentials)),
        signal: options.signal ?? null,
      },
      this.settings.requestTimeoutMs,
    );
    if (!response.ok) throw await classifyExchangeFailure(response);
    const parsed = exchangeResponse.safeParse(await response.json().catch(() => undefined));
    if (!parsed.success) throw new ProviderError('protocol', `${PROVIDER} token exchange answer is malformed`);
    return tokensFrom(parsed.data.jwt);
  }

  /** Booking.com has no revocation: disconnecting wipes our copy of the credentials, and the user removes the machine account. */
  async revoke(): Promise<RevocationOutcome> {
    return 'not_supported';
  }
}

function parseCredentials(serialized: string): BookingCredentials {
  let value: unknown;
  try {
    value = JSON.parse(serialized);
  } catch {
    value = undefined;
  }
  const parsed = storedCredentials.safeParse(value);
  // Stored credentials we cannot read will never work: the user must enter them again.
  if (!parsed.success) throw new ProviderError('invalid_grant', `${PROVIDER} credentials are not in the expected form`);
  return parsed.data;
}

function tokensFrom(jwt: string): ProviderTokens {
  let claims;
  try {
    claims = jwtClaims.parse(decodeJwt(jwt));
  } catch {
    throw new ProviderError('protocol', `${PROVIDER} issued a token that is not a JWT with an expiry`);
  }
  const expiresAt = new Date(claims.exp * 1000);
  return {
    accessToken: jwt,
    refreshToken: undefined,
    expiresAt,
    expiresInSeconds: claims.iat !== undefined ? claims.exp - claims.iat : 3600,
    scopes: undefined,
    ...(claims.machine_account_id !== undefined ? { accountId: String(claims.machine_account_id) } : {}),
  };
}

/** The credentials are the grant, so their refusal is final; the 30-tokens-an-hour limit (429) passes. */
async function classifyExchangeFailure(response: Response): Promise<ProviderError> {
  await response.body?.cancel();
  const message = `${PROVIDER} token exchange answered ${response.status}`;
  const details = { status: response.status };
  if (response.status === 401 || response.status === 403) return new ProviderError('invalid_grant', `${message}: the machine-account credentials were refused`, details);
  if (response.status === 429 || response.status >= 500) return new ProviderError('transient', message, details);
  return new ProviderError('protocol', message, details);
}
