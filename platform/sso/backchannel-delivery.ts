import type { DatabasePool } from 'slonik';
import type { Config } from '../config';
import type { IntegrationCrypto } from '../integration-crypto';
import { SigningKeys } from '../oauth-server/signing-keys';

/**
 * Sending OpenID Connect Back-Channel Logout 1.0 logout tokens (section 2.5): the SSO session
 * workflow's worker signs them for both servers, since both share the database and their keys.
 */

/** One delivery waits this long for the receiver; the workflow retries a timeout like a 503. */
const DELIVERY_TIMEOUT_MS = 10_000;

/** What the worker needs to log either side of an SSO pair out of the other. */
export interface SsoSessionSync {
  /** The api-server's issuer: `iss` of its logout tokens to the portal, `aud` of the portal's to it. */
  issuer: string;
  portal: {
    /** `aud` of the api-server's logout tokens; its registered backchannel_logout_uri is where they go. */
    clientId: string;
    /** The reality-server's base URL: `iss` of its logout tokens, and its receiver when the client names none. */
    publicUrl: string;
  };
  /** The authorization server's keys (the api-server's logout tokens). */
  authorizationServerKeys: SigningKeys;
  /** The reality-server's keys (its logout tokens to the api-server); the first signature creates one. */
  realityServerKeys: SigningKeys;
}

export function createSsoSessionSync(config: Config, services: { db: DatabasePool; crypto: IntegrationCrypto }): SsoSessionSync {
  const grace = config.authorizationServer.signingKeyGraceSeconds;
  return {
    issuer: config.authorizationServer.issuer,
    portal: { clientId: config.sso.portal.clientId, publicUrl: config.sso.portal.publicUrl },
    authorizationServerKeys: new SigningKeys(services.db, services.crypto, grace),
    realityServerKeys: new SigningKeys(services.db, services.crypto, grace, 'reality-server'),
  };
}

/** The reality-server's receiver when the portal client names none (api/reality: `POST /sso/backchannel-logout`). */
export function portalBackchannelLogoutUri(sync: SsoSessionSync): string {
  return `${sync.portal.publicUrl}/sso/backchannel-logout`;
}

/** The api-server's receiver of the portal's logout tokens. */
export function apiServerBackchannelLogoutUri(sync: SsoSessionSync): string {
  return `${sync.issuer}/oauth/backchannel-logout`;
}

/**
 * - delivered: 2xx (section 2.8 asks for 200; some frameworks answer 204);
 * - refused: 400, the receiver's verdict on the token (section 2.8), which a repeat cannot change;
 * - unavailable: anything else (5xx, a timeout, no connection, a redirect), which a later attempt may get past.
 */
export type LogoutTokenDelivery = { outcome: 'delivered' | 'refused' | 'unavailable'; status: number | null; message: string };

/** Posts `logout_token` as a form (section 2.5). The token is never part of the answer. */
export async function postLogoutToken(uri: string, token: string, signal?: AbortSignal): Promise<LogoutTokenDelivery> {
  let response: Response;
  try {
    response = await fetch(uri, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ logout_token: token }).toString(),
      redirect: 'manual',
      signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(DELIVERY_TIMEOUT_MS)]) : AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
    });
  } catch (error) {
    const cause = error instanceof Error ? (error.name === 'TimeoutError' ? `no answer within ${DELIVERY_TIMEOUT_MS} ms` : error.message) : String(error);
    return { outcome: 'unavailable', status: null, message: `${uri} could not be reached: ${cause}` };
  }
  // The body is not needed (and may be large); reading none frees the connection.
  await response.body?.cancel().catch(() => undefined);
  const { status } = response;
  if (status >= 200 && status < 300) return { outcome: 'delivered', status, message: `${uri} answered ${status}` };
  if (status === 400) return { outcome: 'refused', status, message: `${uri} refused the logout token (400)` };
  return { outcome: 'unavailable', status, message: `${uri} answered ${status}` };
}
