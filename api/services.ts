import type { Client } from '@temporalio/client';
import type { Config } from '../platform/config';
import type { PlatformServices } from '../platform/services';
import type { AlexaRequestVerifier } from '../platform/voice/alexa-request-verification';
import type { PmSession, UserRow } from '../db/queries/users';

/** What the api-server is built from; tests hand in their own database, Temporal client and providers. */
export interface ApiServices extends PlatformServices {
  config: Config;
  temporal: Client;
  /**
   * Checks requests Alexa sends straight to the skill endpoint. When not handed in, buildApiServer builds
   * it from config (Amazon's certificates, the system's roots); it stays undefined while ALEXA_SKILL_ID is unset.
   */
  alexaRequestVerifier?: AlexaRequestVerifier | undefined;
  /**
   * The authorization server's now (token lifetimes, expiry checks, the rotation grace); real time when
   * not handed in. Lifecycle tests run the api-server on the time-skipping server's simulated clock.
   */
  clock?: () => Date;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: ApiServices;
    authenticate: (request: FastifyRequest) => Promise<void>;
  }
  interface FastifyRequest {
    user: UserRow | null;
    /** The PM session `authenticate` found (its id is the OpenID Connect `sid`). */
    pmSession: PmSession | null;
  }
}
