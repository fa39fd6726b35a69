import type { Client } from '@temporalio/client';
import type { JWTVerifyGetKey } from 'jose';
import type { DatabasePool } from '../../db/pool';
import { AuditLog } from '../../platform/audit';
import type { Config } from '../../platform/config';
import type { PortalPrincipal } from '../../platform/portal/sessions';
import { apiServerKeySet } from '../../platform/sso/api-server-keys';
import { PortalRelyingParty } from '../../platform/sso/portal-relying-party';
import type { SsoSessionWorkflows } from './sso-session-workflow';

/** What the reality-server is built from; tests hand in their own database and Temporal client, and may hand in the rest. */
export interface RealityServices {
  config: Config;
  db: DatabasePool;
  temporal: Client;
  audit?: AuditLog;
  /** The api-server's signing keys (SSO tokens, logout tokens); from its JWKS when not handed in. */
  apiServerKeys?: JWTVerifyGetKey;
  /** The portal as the api-server's OpenID Connect client; none without REALITY_OIDC_CLIENT_SECRET. */
  relyingParty?: PortalRelyingParty | undefined;
  /** The portal's now for token lifetimes; real time when not handed in. */
  clock?: () => Date;
}

/** RealityServices with every member present (the relying party stays absent without a client secret). */
export type ResolvedRealityServices = Required<Omit<RealityServices, 'relyingParty'>> & { relyingParty: PortalRelyingParty | undefined };

/** The services every reality-server plugin uses. */
export interface PortalServices extends ResolvedRealityServices {
  workflows: SsoSessionWorkflows;
}

/** The defaults for what the caller did not hand in, built from config. */
export function realityServicesFromConfig(services: RealityServices): ResolvedRealityServices {
  const { config } = services;
  const issuer = config.authorizationServer.issuer;
  const { clientId, clientSecret, apiServerTimeoutMs } = config.sso.portal;
  return {
    ...services,
    audit: services.audit ?? new AuditLog(services.db),
    apiServerKeys: services.apiServerKeys ?? apiServerKeySet(config.authorizationServer.internalUrl, { timeoutMs: apiServerTimeoutMs }),
    relyingParty:
      'relyingParty' in services
        ? services.relyingParty
        : clientSecret
          ? new PortalRelyingParty({
              issuer,
              apiServerUrl: config.authorizationServer.internalUrl,
              clientId,
              clientSecret,
              // openid-client speaks only https to the issuer unless told; plain http only outside production.
              allowInsecureRequests: config.appEnv !== 'production' && issuer.startsWith('http:'),
              timeoutMs: apiServerTimeoutMs,
            })
          : undefined,
    clock: services.clock ?? (() => new Date()),
  };
}

declare module 'fastify' {
  interface FastifyInstance {
    portal: PortalServices;
    /** preHandler: the request must carry a live portal session (cookie or Bearer token); else 401. */
    authenticatePortal: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
  interface FastifyRequest {
    /** Who `authenticatePortal` found signed in. */
    portalUser: PortalPrincipal | null;
  }
}
