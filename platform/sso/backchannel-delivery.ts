import type { DatabasePool } from 'slonik';
import type { Config } from '../config';
import type { IntegrationCrypto } from '../integration-crypto';
import { SigningKeys } from '../oauth-server/signing-keys';
import { internalUrlOf } from './internal-urls';

/**
 * Sending OpenID Connect Back-Channel Logout 1.0 logout tokens (section 2.5): the SSO session
 * workflow's worker signs them for both servers, since both share the database and their keys.
 */

/** What the worker needs to log either side of an SSO pair out of the other. */
export interface SsoSessionSync {
  /** The api-server's issuer: `iss` of its logout tokens to the portal, `aud` of the portal's to it. */
  issuer: string;
  /** Where the worker reaches the api-server (API_INTERNAL_URL, default the issuer). */
  apiServerUrl: string;
  portal: {
    /** `aud` of the api-server's logout tokens; its registered backchannel_logout_uri is where they go. */
    clientId: string;
    /** The reality-server's base URL: `iss` of its logout tokens, and its receiver when the client names none. */
    publicUrl: string;
    /** Where the worker reaches the reality-server (REALITY_INTERNAL_URL, default publicUrl). */
    internalUrl: string;
  };
  /** The authorization server's keys (the api-server's logout tokens). */
  authorizationServerKeys: SigningKeys;
  /** The reality-server's keys (its logout tokens to the api-server); the first signature creates one. */
  realityServerKeys: SigningKeys;
  /** SSO_LOGOUT_TOKEN_TTL_SECONDS: the `exp` of the logout tokens, after their `iat`. */
  logoutTokenSeconds: number;
  /** SSO_BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS: one delivery waits this long; the workflow retries a timeout like a 503. */
  deliveryTimeoutSeconds: number;
}

export function createSsoSessionSync(config: Config, services: { db: DatabasePool; crypto: IntegrationCrypto }): SsoSessionSync {
  const grace = config.authorizationServer.signingKeyGraceSeconds;
  return {
    issuer: config.authorizationServer.issuer,
    apiServerUrl: config.authorizationServer.internalUrl,
    portal: { clientId: config.sso.portal.clientId, publicUrl: config.sso.portal.publicUrl, internalUrl: config.sso.portal.internalUrl },
    authorizationServerKeys: new SigningKeys(services.db, services.crypto, grace),
    realityServerKeys: new SigningKeys(services.db, services.crypto, grace, 'reality-server'),
    logoutTokenSeconds: config.sso.logoutTokenSeconds,
    deliveryTimeoutSeconds: config.sso.backchannelLogoutTimeoutSeconds,
  };
}

/**
 * Where the worker posts the api-server's logout tokens: the portal client's registered
 * backchannel_logout_uri, else the reality-server's receiver (api/reality: `POST /sso/backchannel-logout`).
 * Both are public URIs, which the OP announces; under REALITY_PUBLIC_URL they are reached at REALITY_INTERNAL_URL.
 */
export function portalBackchannelLogoutUri(sync: SsoSessionSync, registeredUri: string | null): string {
  return internalUrlOf(registeredUri ?? `${sync.portal.publicUrl}/sso/backchannel-logout`, sync.portal);
}

/** The api-server's receiver of the portal's logout tokens, where the worker reaches it. */
export function apiServerBackchannelLogoutUri(sync: SsoSessionSync): string {
  return `${sync.apiServerUrl}/oauth/backchannel-logout`;
}

/**
 * - delivered: 2xx (section 2.8 asks for 200; some frameworks answer 204);
 * - refused: 400, the receiver's verdict on the token (section 2.8), which a repeat cannot change;
 * - unavailable: anything else (5xx, a timeout, no connection, a redirect), which a later attempt may get past.
 */
export type LogoutTokenDelivery = { outcome: 'delivered' | 'refused' | 'unavailable'; status: number | null; message: string };

/** Posts `logout_token` as a form (section 2.5), waiting `timeoutSeconds` for the answer. The token is never part of the answer. */
export async function postLogoutToken(uri: string, token: string, options: { timeoutSeconds: number; signal?: AbortSignal }): Promise<LogoutTokenDelivery> {
  const timeout = AbortSignal.timeout(options.timeoutSeconds * 1000);
  let response: Response;
  try {
    response = await fetch(uri, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ logout_token: token }).toString(),
      redirect: 'manual',
      signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
    });
  } catch (error) {
    const cause = error instanceof Error ? (error.name === 'TimeoutError' ? `no answer within ${options.timeoutSeconds} s` : error.message) : String(error);
    return { outcome: 'unavailable', status: null, message: `${uri} could not be reached: ${cause}` };
  }
  // The body is not needed (and may be large); reading none frees the connection.
  await response.body?.cancel().catch(() => undefined);
  const { status } = response;
  if (status >= 200 && status < 300) return { outcome: 'delivered', status, message: `${uri} answered ${status}` };
  if (status === 400) return { outcome: 'refused', status, message: `${uri} refused the logout token (400)` };
  return { outcome: 'unavailable', status, message: `${uri} answered ${status}` };
}
