import * as client from 'openid-client';
import { internalUrlOf, type ServerAddress } from './internal-urls';

export interface PortalRelyingPartySettings {
  /** The api-server's issuer; its discovery document is `${issuer}/.well-known/openid-configuration`. */
  issuer: string;
  /**
   * Where the portal reaches the api-server (API_INTERNAL_URL), when not at the issuer: discovery and
   * every endpoint under the issuer that openid-client calls are reached at the same paths under it.
   */
  apiServerUrl?: string;
  clientId: string;
  clientSecret: string;
  /** Plain http to the issuer, which openid-client refuses unless told (development and tests only). */
  allowInsecureRequests: boolean;
  /** How long one request to the api-server may take (PORTAL_API_SERVER_TIMEOUT_MS). */
  timeoutMs: number;
}

/**
 * The Reality Portal as the api-server's OpenID Connect client, with openid-client. The discovered
 * Configuration is kept; a failed discovery is not, so the next sign-in discovers again, and so does
 * one after `forget` (a grant that failed in a way new metadata might cure). openid-client checks the
 * issuer and the endpoints' https against the public URLs; only its requests go to `apiServerUrl`.
 */
export class PortalRelyingParty {
  private discovered: Promise<client.Configuration> | undefined;

  constructor(private readonly settings: PortalRelyingPartySettings) {}

  configuration(): Promise<client.Configuration> {
    if (!this.discovered) {
      const { issuer, apiServerUrl, clientId, clientSecret, allowInsecureRequests, timeoutMs } = this.settings;
      const address: ServerAddress = { publicUrl: issuer, internalUrl: apiServerUrl ?? issuer };
      const discovered = client.discovery(new URL(issuer), clientId, clientSecret, client.ClientSecretBasic(clientSecret), {
        ...(allowInsecureRequests ? { execute: [client.allowInsecureRequests] } : {}),
        [client.customFetch]: (url, options) => fetch(internalUrlOf(url, address), options),
        // openid-client counts in seconds.
        timeout: timeoutMs / 1000,
      });
      this.discovered = discovered;
      discovered.catch(() => {
        if (this.discovered === discovered) this.discovered = undefined;
      });
    }
    return this.discovered;
  }

  forget(): void {
    this.discovered = undefined;
  }
}

/** A status of the api-server that says "later", not "no". */
function serverFault(status: number | undefined): boolean {
  return status !== undefined && (status >= 500 || status === 429);
}

/**
 * Whether openid-client failed because the api-server could not answer now (unreachable, timed out,
 * 5xx, temporarily_unavailable): the portal then answers 503, never a sign-in refusal.
 */
export function isTransientOidcFailure(error: unknown): boolean {
  if (error instanceof client.ResponseBodyError) return serverFault(error.status) || error.error === 'temporarily_unavailable';
  if (error instanceof client.ClientError) {
    if (error.code === 'OAUTH_TIMEOUT' || error.code === 'OAUTH_ABORT') return true;
    return error.cause instanceof Response && serverFault(error.cause.status);
  }
  // fetch's own failure (connection refused, reset, DNS), which undici words this way.
  return error instanceof TypeError && error.message === 'fetch failed';
}
