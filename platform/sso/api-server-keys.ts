import { createRemoteJWKSet, errors as joseErrors, type JWTVerifyGetKey } from 'jose';

/**
 * The api-server's key set could not be had (unreachable, slow, an error status, not a key set), or
 * could not be fetched again for a key it lacks: a fault of ours that passes, never a verdict on the
 * token being verified. Not a JOSEError, so joseRejection rethrows it and the receiver answers 503
 * instead of refusing the token.
 */
export class KeySetUnavailable extends Error {
  override name = 'KeySetUnavailable';
}

/**
 * The keys the api-server signs SSO tokens and logout tokens with, fetched from its JWKS
 * (`${apiServerUrl}/oauth/jwks`: the discovery document's jwks_uri, at the address this server reaches
 * the api-server by) and cached by jose. A token naming a kid the cached set lacks makes jose fetch
 * again, but not within `cooldownMs` of the last fetch, so invented kids cannot make us hammer the
 * api-server. One fetch may take `timeoutMs` (PORTAL_API_SERVER_TIMEOUT_MS): a request waits for it. Such a kid is the token's fault only when the set was fetched after the token arrived;
 * while the cooldown holds it may be a key the api-server has just rotated to, and the answer is
 * "later" (KeySetUnavailable).
 */
export function apiServerKeySet(apiServerUrl: string, options: { timeoutMs: number; cooldownMs?: number }): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(new URL(`${apiServerUrl}/oauth/jwks`), {
    timeoutDuration: options.timeoutMs,
    ...(options.cooldownMs !== undefined ? { cooldownDuration: options.cooldownMs } : {}),
  });
  return async (protectedHeader, token) => {
    const fetchesOnMiss = !remote.coolingDown;
    try {
      return await remote(protectedHeader, token);
    } catch (error) {
      if (error instanceof joseErrors.JWKSNoMatchingKey && !fetchesOnMiss) {
        throw new KeySetUnavailable("the token's key is not in the api-server's key set as last fetched, which is too recent to fetch again", { cause: error });
      }
      if (error instanceof joseErrors.JWKSNoMatchingKey || error instanceof joseErrors.JWKSMultipleMatchingKeys) throw error;
      throw new KeySetUnavailable(`the api-server's key set could not be fetched: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  };
}
