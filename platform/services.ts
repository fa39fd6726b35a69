import { createDatabasePool, type DatabasePool } from '../db/pool';
import { AuditLog } from './audit';
import { ConfigError, type Config } from './config';
import { IntegrationCrypto, KeyFormatError } from './integration-crypto';
import type { ProviderFeaturesRegistry } from './providers/features';
import type { ProviderRegistry } from './providers/provider';
import { createProviderFeatures, createProviderRegistry } from './providers/registry';
import { createVoicePlatforms } from './voice/registry';
import type { VoicePlatforms } from './voice/voice-platform';

/** What both the api-server and the worker are built from. */
export interface PlatformServices {
  db: DatabasePool;
  crypto: IntegrationCrypto;
  providers: ProviderRegistry;
  features: ProviderFeaturesRegistry;
  audit: AuditLog;
  /** Login with Amazon, the Alexa event gateway and Home Graph, for the voice-device workflow's activities. */
  voice: VoicePlatforms;
  /** How the token writers' lease lives and is renewed (TOKEN_LEASE_*). */
  tokenLease: Config['tokenLease'];
}

export function createIntegrationCrypto(config: Config): IntegrationCrypto {
  if (!config.encryption.activeKey) throw new ConfigError(['INTEGRATION_ENCRYPTION_KEY: is required']);
  try {
    return IntegrationCrypto.fromKeyTexts(config.encryption.activeKey, config.encryption.previousKeys);
  } catch (error) {
    if (error instanceof KeyFormatError) throw new ConfigError([error.message]);
    throw error;
  }
}

/**
 * `clock` is what the voice platforms' clients take the time to be (tests that move a fake's clock hand
 * theirs in). `process` is whose database pool this is: the api-server's (the default) answers within a
 * voice platform's patience, so its statements and lock waits are bounded (DATABASE_STATEMENT_TIMEOUT_MS,
 * DATABASE_LOCK_TIMEOUT_MS) and a slow database answers 503 in time; the worker's syncs and clean-ups may
 * run long and wait for locks, so it keeps slonik's 60 s statement timeout and no lock timeout.
 */
export async function createPlatformServices(config: Config, options: { clock?: () => Date; process?: 'api-server' | 'worker' } = {}): Promise<PlatformServices> {
  const crypto = createIntegrationCrypto(config);
  // Before the pool: a bad service account key stops start-up without leaving connections open.
  const { clock } = options;
  const voice = createVoicePlatforms(config, clock ? { now: () => clock().getTime() } : {});
  if (!config.databaseUrl) throw new ConfigError(['DATABASE_URL: is required']);
  const timeouts = options.process === 'worker' ? {} : { statementTimeoutMs: config.databaseStatementTimeoutMs, lockTimeoutMs: config.databaseLockTimeoutMs };
  const db = await createDatabasePool(config.databaseUrl, {
    maximumPoolSize: config.databasePoolSize,
    connectionTimeoutMs: config.databaseConnectionTimeoutMs,
    ...timeouts,
  });
  const providers = createProviderRegistry(config);
  return { db, crypto, providers, features: createProviderFeatures(config, providers), audit: new AuditLog(db), voice, tokenLease: config.tokenLease };
}
