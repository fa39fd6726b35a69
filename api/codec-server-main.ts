import path from 'node:path';
import pino from 'pino';
import { CODEC_SERVER_NEEDS, ConfigError, loadConfig } from '../platform/config';
import { DEV_DATA_DIR, readOrCreate } from '../platform/dev-secrets';
import { generateEncryptionKey } from '../platform/integration-crypto';
import { loggerOptions } from '../platform/logger';
import { createPayloadCodec } from '../platform/payload-codec';
import { runUntilSignalled } from '../platform/process';
import { randomToken } from '../platform/secrets';
import { buildCodecServer } from './codec-server';

/**
 * `npm run codec-server`: the codec server as its own process (CODEC_SERVER_PORT, default 8234).
 * Production needs TEMPORAL_PAYLOAD_KEY and CODEC_SERVER_TOKEN; in development both default to the
 * values `npm run dev` generated once under .data/dev.
 */
await runUntilSignalled('codec-server', async () => {
  const environment: NodeJS.ProcessEnv = { ...process.env };
  const development = environment.APP_ENV === 'development';
  if (development && !environment.TEMPORAL_PAYLOAD_KEY) {
    environment.TEMPORAL_PAYLOAD_KEY = (await readOrCreate(path.join(DEV_DATA_DIR, 'temporal-payload-key'), generateEncryptionKey)).value;
  }
  if (development && !environment.CODEC_SERVER_TOKEN) {
    environment.CODEC_SERVER_TOKEN = (await readOrCreate(path.join(DEV_DATA_DIR, 'codec-server-token'), randomToken)).value;
  }
  const config = loadConfig(environment, CODEC_SERVER_NEEDS);
  const logger = pino(loggerOptions(config));
  const codec = createPayloadCodec(config.payloadEncryption);
  if (!config.codecServer.token) throw new ConfigError(['CODEC_SERVER_TOKEN: is required']);
  const app = await buildCodecServer({ codec, token: config.codecServer.token, corsOrigin: config.codecServer.corsOrigin, logLevel: config.logLevel });
  await app.listen({ host: config.codecServer.host, port: config.codecServer.port });
  logger.info({ port: config.codecServer.port, corsOrigin: config.codecServer.corsOrigin, keyId: codec.activeKeyId }, 'codec server started');
  return async () => {
    await app.close();
  };
});
