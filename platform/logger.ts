import type { FastifyServerOptions } from 'fastify';
import type { LoggerOptions } from 'pino';
import type { Config } from './config';

/** Paths pino blanks in every record: credentials must never reach a log line. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.password',
  '*.accessToken',
  '*.refreshToken',
  '*.clientSecret',
  '*.code',
  '*.codeVerifier',
];

export function loggerOptions(config: Pick<Config, 'logLevel'>): LoggerOptions {
  return { level: config.logLevel, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } };
}

/** Request logs keep the path only: OAuth callbacks carry the code and state in the query string. */
export function fastifyLoggerOptions(config: Pick<Config, 'logLevel'>): FastifyServerOptions['logger'] {
  return {
    ...loggerOptions(config),
    serializers: {
      req: (request: { method: string; url: string; id: string }) => ({
        id: request.id,
        method: request.method,
        path: request.url.split('?')[0],
      }),
    },
  };
}
