import { Connection, type Client } from '@temporalio/client';
import { createDatabasePool, type DatabasePool } from '../../db/pool';
import { ConfigError, loadConfig, type Config } from '../../platform/config';
import { createPayloadCodec } from '../../platform/payload-codec';
import { connectTemporalClient } from '../../platform/temporal';

/**
 * What the commands run against, opened on first use so that each command needs only the variables
 * it uses (listing needs no integration key, registering search attributes neither database nor payload key).
 */
export class AdminContext {
  private loaded: Config | undefined;
  private pool: Promise<DatabasePool> | undefined;
  private connection: Promise<Connection> | undefined;
  private client: Promise<Client> | undefined;

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  /** Throws ConfigError naming every wrong variable. */
  config(): Config {
    this.loaded ??= loadConfig(this.env, []);
    return this.loaded;
  }

  /** For commands that print our public URLs: they must be the api-server's (PUBLIC_BASE_URL or OAUTH_ISSUER), never a default. */
  configWithPublicUrls(): Config {
    if (!this.env.PUBLIC_BASE_URL && !this.env.OAUTH_ISSUER) {
      throw new ConfigError(["PUBLIC_BASE_URL: is required for this command (the api-server's, or set OAUTH_ISSUER)"]);
    }
    return this.config();
  }

  db(): Promise<DatabasePool> {
    const { databaseUrl } = this.config();
    if (!databaseUrl) throw new ConfigError(['DATABASE_URL: is required for this command']);
    // One connection is plenty for a command line, and leaves the servers' pools their room.
    this.pool ??= createDatabasePool(databaseUrl, { maximumPoolSize: 1 });
    return this.pool;
  }

  /** Temporal without the payload codec: enough for the operator service (search attributes). */
  temporalConnection(): Promise<Connection> {
    this.connection ??= Connection.connect({ address: this.config().temporal.address });
    return this.connection;
  }

  /** A client that encrypts what it sends and decrypts what it reads, like the api-server's. */
  temporalClient(): Promise<Client> {
    // Built before connecting, so a missing TEMPORAL_PAYLOAD_KEY is a configuration error, not a network wait.
    const codec = createPayloadCodec(this.config().payloadEncryption);
    this.client ??= connectTemporalClient(this.config().temporal, codec);
    return this.client;
  }

  async close(): Promise<void> {
    const [pool, connection, client] = await Promise.allSettled([this.pool, this.connection, this.client]);
    if (pool.status === 'fulfilled' && pool.value) await pool.value.end();
    if (connection.status === 'fulfilled' && connection.value) await connection.value.close();
    if (client.status === 'fulfilled' && client.value) await client.value.connection.close();
  }
}
