import type { FastifyInstance } from 'fastify';
import { Client, Connection } from '@temporalio/client';
import { inject } from 'vitest';
import { buildApiServer } from '../../api/app';
import { migrate } from '../../db/migrate';
import { loadConfig, type Config } from '../../platform/config';
import { generateEncryptionKey } from '../../platform/integration-crypto';
import { registerClient } from '../../platform/oauth-server/clients';
import { createPlatformServices, type PlatformServices } from '../../platform/services';
import { createUser } from '../../platform/users';
import { createTestDatabase } from './database';
import { freePort } from './ports';

export const ADMIN_TOKEN = 'admin-token-for-tests-0123456789abcdef';
export const INITIAL_ACCESS_TOKEN = 'initial-access-token-for-tests-0123456789';
export const USER_PASSWORD = 'correct horse battery staple';

export interface OAuthTestServer extends PlatformServices {
  config: Config;
  app: FastifyInstance;
  /** The issuer and base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  createUser(email: string): Promise<{ id: string; email: string; password: string }>;
  /** A confidential client (client_secret_basic unless said otherwise) with the given redirect URIs. */
  createClient(options?: Partial<Parameters<typeof registerClient>[1]>): ReturnType<typeof registerClient>;
  close(): Promise<void>;
}

/**
 * The api-server over real HTTP with a fresh database, as the authorization server's tests need it.
 * Temporal is not involved here, so the client connects lazily (to an address where nothing answers)
 * unless a test that watches what the api-server tells workflows hands in its own `temporal` client.
 */
export async function startOAuthTestServer(environment: Record<string, string> = {}, options: { temporal?: Client } = {}): Promise<OAuthTestServer> {
  const database = await createTestDatabase(inject('databaseUrl'));
  await migrate(database.url);
  // Nothing listens there; without the client's retry interceptor no retry timer outlives a call, so closing it cannot throw.
  const temporalConnection = Connection.lazy({ address: '127.0.0.1:1', interceptors: [] });
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const config = loadConfig({
    APP_ENV: 'test',
    API_PORT: String(port),
    PUBLIC_BASE_URL: url,
    LOG_LEVEL: 'silent',
    DATABASE_URL: database.url,
    INTEGRATION_ENCRYPTION_KEY: generateEncryptionKey(),
    ADMIN_API_TOKEN: ADMIN_TOKEN,
    OAUTH_INITIAL_ACCESS_TOKEN: INITIAL_ACCESS_TOKEN,
    ...environment,
  });
  const services = await createPlatformServices(config);
  const app = await buildApiServer({ ...services, config, temporal: options.temporal ?? new Client({ connection: temporalConnection }) }).catch(async (error) => {
    await services.db.end();
    throw error;
  });
  await app.listen({ host: '127.0.0.1', port });

  return {
    ...services,
    config,
    app,
    url,
    async createUser(email) {
      const user = await createUser(services.db, { email, displayName: email.split('@')[0]!, password: USER_PASSWORD });
      return { id: user.id, email, password: USER_PASSWORD };
    },
    createClient(options = {}) {
      return registerClient(services.db, {
        name: 'Test client',
        tokenEndpointAuthMethod: 'client_secret_basic',
        redirectUris: ['https://client.example/callback'],
        grantTypes: ['authorization_code', 'refresh_token'],
        scopes: ['properties:read', 'reservations:read', 'offline_access'],
        kind: 'third_party',
        registeredBy: 'admin',
        ...options,
      });
    },
    async close() {
      await app.close();
      await temporalConnection.close().catch(() => undefined);
      await services.db.end();
      await database.drop();
    },
  };
}

/** A request to the api-server's admin API with the admin token (or `token`); `body` is sent as JSON. */
export function adminRequest(baseUrl: string, method: string, path: string, body?: unknown, token = ADMIN_TOKEN): Promise<Response> {
  return fetch(`${baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}
