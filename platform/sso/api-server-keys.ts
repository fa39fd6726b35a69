import { createRemoteJWKSet, errors as joseErrors, type JWTVerifyGetKey } from 'jose';

/**
 * The api-server's key set could not be had (unreachable, slow, an error status, not a key set): a
 * fault of ours that passes, never a verdict on the token being verified. Not a JOSEError, so
 * joseRejection rethrows it and the receiver answers 503 instead of refusing the token.
 */
export class KeySetUnavailable extends Error {
  override name = 'KeySetUnavailable';
}

/** How long one fetch of the key set may take: a request waits for it. */
const KEY_SET_FETCH_TIMEOUT_MS = 3000;

/**
 * The keys the api-server signs SSO tokens and logout tokens with, fetched from its JWKS
 * (`${issuer}/oauth/jwks`, the discovery document's jwks_uri) and cached by jose; a token naming an
 * unknown kid makes it fetch again (at most every 30 s). Only "no key matches" is the token's fault.
 */
export function apiServerKeySet(issuer: string, options: { timeoutMs?: number } = {}): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(new URL(`${issuer}/oauth/jwks`), { timeoutDuration: options.timeoutMs ?? KEY_SET_FETCH_TIMEOUT_MS });
  return async (protectedHeader, token) => {
    try {
      return await remote(protectedHeader, token);
    } catch (error) {
      if (error instanceof joseErrors.JWKSNoMatchingKey || error instanceof joseErrors.JWKSMultipleMatchingKeys) throw error;
      throw new KeySetUnavailable(`the api-server's key set could not be fetched: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  };
}
