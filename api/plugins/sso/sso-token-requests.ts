import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../../../platform/config';
import type { SsoTokenIssuer } from '../../../platform/sso/sso-token-issuance';

/** The authorization server's keys, issuer and clock, as the SSO token exchange and the button both sign with them. */
export function portalSsoTokenIssuer(app: FastifyInstance): SsoTokenIssuer {
  const { authorizationServer } = app;
  return {
    keys: authorizationServer.keys,
    issuer: authorizationServer.issuer,
    clock: authorizationServer.tokens.clock,
    audit: app.services.audit,
    sso: app.services.config.sso,
  };
}

/**
 * SSO_TOKEN_REQUESTS_PER_MINUTE per signed-in user (per route): run after the route's preHandler has
 * found the user, so one user cannot mint tokens without bound, whatever address they come from.
 */
export function ssoTokenRateLimit(config: Config) {
  return {
    max: config.sso.tokenRequestsPerMinute,
    timeWindow: '1 minute',
    hook: 'preHandler' as const,
    keyGenerator: (request: FastifyRequest) => (request.user ? `user|${request.user.id}` : `address|${request.ip}`),
  };
}
