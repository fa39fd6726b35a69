import { z } from 'zod';
import { readProviderJson } from './provider-error';

/** What a token endpoint gave us. Secrets live here only on their way into IntegrationCrypto. */
export interface ProviderTokens {
  accessToken: string;
  /** Absent when the provider did not rotate it: the stored one stays valid. */
  refreshToken: string | undefined;
  expiresInSeconds: number;
  /** Where the provider says when the token expires instead of how long it lives (Airbnb); wins over expiresInSeconds. */
  expiresAt?: Date;
  scopes: string[] | undefined;
  /** The provider's id for the account that granted access (Google `sub`, Airbnb user id), where it tells us. */
  accountId?: string;
}

/** A token request stops waiting when its caller cancels (an activity attempt that Temporal gave up on). */
export interface TokenRequestOptions {
  signal?: AbortSignal;
}

const standardTokenResponse = z.object({
  access_token: z.string().min(1),
  refresh_token: z.string().min(1).optional(),
  expires_in: z.coerce.number().int().positive(),
  scope: z.string().optional(),
  token_type: z.string().regex(/^bearer$/i),
});

/** Parses an RFC 6749 section 5.1 token response. */
export async function readStandardTokenResponse(provider: string, response: Response): Promise<ProviderTokens> {
  const answer = await readProviderJson(provider, 'token response', response, standardTokenResponse);
  return {
    accessToken: answer.access_token,
    refreshToken: answer.refresh_token,
    expiresInSeconds: answer.expires_in,
    scopes: answer.scope?.split(' ').filter(Boolean),
  };
}
