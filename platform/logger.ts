import type { FastifyServerOptions } from 'fastify';
import { DefaultLogger, type LogLevel as TemporalLogLevel } from '@temporalio/worker';
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { Config } from './config';

/**
 * Field names that hold credentials somewhere in the platform: ours, the providers' (OAuth's
 * snake_case), Booking.com's machine credentials, webhook secrets, and the activity task token
 * that Temporal's activity logger adds (whoever holds it can complete the activity).
 */
const SECRET_FIELDS = [
  'password',
  'secret',
  'token',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'idToken',
  'id_token',
  'sessionToken',
  'clientSecret',
  'client_secret',
  'client_assertion',
  'assertion',
  'code',
  'authorizationCode',
  'codeVerifier',
  'code_verifier',
  'credentials',
  'machineCredentials',
  'webhookSecret',
  'signingKey',
  'privateKey',
  'encryptionKey',
  'taskToken',
  // Query strings carry codes, states and tokens (callbacks, provider URLs).
  'query',
  'querystring',
];

/** Paths pino blanks in every record, at the top level and one level down: credentials must never reach a log line. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'req.body',
  'res.headers["set-cookie"]',
  ...SECRET_FIELDS.flatMap((field) => [field, `*.${field}`]),
];

export function loggerOptions(config: Pick<Config, 'logLevel'>): LoggerOptions {
  return { level: config.logLevel, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } };
}

/** The process's pino logger; tests hand in a destination to read every line it writes. */
export function createLogger(config: Pick<Config, 'logLevel'>, destination?: DestinationStream): Logger {
  return destination ? pino(loggerOptions(config), destination) : pino(loggerOptions(config));
}

/** Request logs keep the path only: OAuth callbacks carry the code and state in the query string. */
export function fastifyLoggerOptions(config: Pick<Config, 'logLevel'>, destination?: DestinationStream): FastifyServerOptions['logger'] {
  return {
    ...loggerOptions(config),
    ...(destination ? { stream: destination } : {}),
    serializers: {
      req: (request: { method: string; url: string; id: string }) => ({
        id: request.id,
        method: request.method,
        path: request.url.split('?')[0],
      }),
    },
  };
}

const TEMPORAL_LEVELS: Record<Config['logLevel'], TemporalLogLevel> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
  fatal: 'ERROR',
  silent: 'ERROR',
};

/**
 * Temporal's runtime logger writing through pino, so worker, workflow and activity lines are JSON
 * with the same redaction. The SDK adds workflowId, workflowType, runId (and activityId) as fields.
 */
export function temporalRuntimeLogger(logger: Logger, level: Config['logLevel']): DefaultLogger {
  return new DefaultLogger(TEMPORAL_LEVELS[level], (entry) => {
    logger[entry.level.toLowerCase() as Lowercase<TemporalLogLevel>]({ ...entry.meta }, entry.message);
  });
}
