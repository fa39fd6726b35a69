import type { Client } from '@temporalio/client';
import type { Config } from '../platform/config';
import type { PlatformServices } from '../platform/services';
import type { UserRow } from '../db/queries/users';

/** What the api-server is built from; tests hand in their own database, Temporal client and providers. */
export interface ApiServices extends PlatformServices {
  config: Config;
  temporal: Client;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: ApiServices;
    authenticate: (request: FastifyRequest) => Promise<void>;
  }
  interface FastifyRequest {
    user: UserRow | null;
  }
}
