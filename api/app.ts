import Fastify, { type FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import rateLimit from '@fastify/rate-limit';
import type { DestinationStream } from 'pino';
import { fastifyLoggerOptions } from '../platform/logger';
import { OAUTH_PROVIDER_IDS, PROVIDER_IDS } from '../platform/providers/provider';
import airbnbListingRoutes from './plugins/airbnb-listings';
import bookingConnectionRoutes from './plugins/booking-connection';
import connectionStatusRoutes from './plugins/connection-status';
import connectionRoutes from './plugins/connections';
import { authorizationServerServices } from './plugins/oauth/index';
import adminClients from './plugins/oauth/admin-clients';
import voiceClientManifests from './plugins/voice/manifests';
import authorize from './plugins/oauth/authorize';
import grants from './plugins/oauth/grants';
import introspection from './plugins/oauth/introspection';
import jwks from './plugins/oauth/jwks';
import login from './plugins/oauth/login';
import metadata from './plugins/oauth/metadata';
import discovery from './plugins/oauth/discovery';
import endSession from './plugins/oauth/end-session';
import userinfo from './plugins/oauth/userinfo';
import registration from './plugins/oauth/registration';
import revocation from './plugins/oauth/revocation';
import token from './plugins/oauth/token';
import errorHandling from './plugins/errors';
import health from './plugins/health';
import openapi from './plugins/openapi';
import sessions from './plugins/sessions';
import airbnbWebhooks from './plugins/webhooks/airbnb';
import googleCalendarWebhooks from './plugins/webhooks/google-calendar';
import googleRiscReceiver from './plugins/webhooks/google-risc';
import voice from './plugins/voice/index';
import microsoftGraphWebhooks from './plugins/webhooks/microsoft-graph';
import ssoAdminRoleMappings from './plugins/sso/admin-role-mappings';
import ssoAdminUsers from './plugins/sso/admin-users';
import ssoBackchannelLogout from './plugins/sso/backchannel-logout';
import ssoPortalButton from './plugins/sso/portal-button';
import ssoTokenExchange from './plugins/sso/token-exchange';
import type { ApiServices } from './services';
import { echoRequestId, requestIdOptions } from './request-id';
import { platformReadinessChecks } from '../platform/readiness';
import { alexaRequestVerifierFromConfig } from '../platform/voice/alexa-request-verification';

/** The api-server: a thin HTTP layer that validates, authenticates, writes what must be written, and talks to workflows. */
export async function buildApiServer(services: ApiServices, options: { logDestination?: DestinationStream } = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: fastifyLoggerOptions(services.config, options.logDestination),
    trustProxy: services.config.http.trustProxy,
    ...requestIdOptions,
  });
  app.decorate('services', { ...services, alexaRequestVerifier: services.alexaRequestVerifier ?? alexaRequestVerifierFromConfig(services.config.voice.alexa) });
  // Before any route: it documents the routes registered after it.
  await app.register(openapi);
  await app.register(echoRequestId);
  await app.register(errorHandling);
  await app.register(formbody);
  // Off by default: the OAuth endpoints that need it (token, introspection, login, registration) opt in per route.
  await app.register(rateLimit, { global: false });
  await app.register(sessions);
  await app.register(health, { checks: platformReadinessChecks(services.db, services.temporal.connection) });
  await app.register(authorizationServerServices);
  for (const plugin of [metadata, jwks, authorize, login, token, introspection, revocation, registration, adminClients, voiceClientManifests, grants]) {
    await app.register(plugin);
  }
  // OpenID Provider: discovery, userinfo and RP-initiated logout (id_tokens come from the token endpoint).
  for (const plugin of [discovery, userinfo, endSession]) {
    await app.register(plugin);
  }
  // Single sign-on into the Reality Portal, the PM side: the SSO token, the button, the portal's logout tokens, and administration.
  for (const plugin of [ssoTokenExchange, ssoPortalButton, ssoBackchannelLogout, ssoAdminUsers, ssoAdminRoleMappings]) {
    await app.register(plugin);
  }
  for (const provider of OAUTH_PROVIDER_IDS) {
    await app.register(connectionRoutes, { prefix: `/api/v1/integrations/${provider}`, provider });
  }
  for (const provider of PROVIDER_IDS) {
    await app.register(connectionStatusRoutes, { prefix: `/api/v1/integrations/${provider}`, provider });
  }
  await app.register(bookingConnectionRoutes, { prefix: '/api/v1/integrations/booking-com' });
  await app.register(airbnbListingRoutes, { prefix: '/api/v1/integrations/airbnb' });
  await app.register(microsoftGraphWebhooks);
  await app.register(airbnbWebhooks);
  await app.register(googleCalendarWebhooks);
  await app.register(googleRiscReceiver);
  await app.register(voice);
  return app;
}
