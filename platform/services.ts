import { createDatabasePool, type DatabasePool } from '../db/pool';
import { AuditLog } from './audit';
import { ConfigError, type Config } from './config';
import { IntegrationCrypto, KeyFormatError } from './integration-crypto';
import { createProviderFeatures, type ProviderFeaturesRegistry } from './providers/features';
import { createProviderRegistry, type ProviderRegistry } from './providers/provider';

/** What both the api-server and the worker are built from. */
export interface PlatformServices {
  db: DatabasePool;
  crypto: IntegrationCrypto;
  providers: ProviderRegistry;
  features: ProviderFeaturesRegistry;
  audit: AuditLog;
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

export async function createPlatformServices(config: Config): Promise<PlatformServices> {
  const crypto = createIntegrationCrypto(config);
  if (!config.databaseUrl) throw new ConfigError(['DATABASE_URL: is required']);
  const db = await createDatabasePool(config.databaseUrl);
  const providers = createProviderRegistry(config);
  return { db, crypto, providers, features: createProviderFeatures(config, providers), audit: new AuditLog(db) };
}
