import type { FastifyRequest } from 'fastify';
import { secretsEqual } from '../../../platform/secrets';

/**
 * Checks `Authorization: Bearer <token>` against a configured token (the admin API token, the initial
 * access token of dynamic registration) in constant time. The scheme name is case-insensitive.
 */
export function checkConfiguredBearer(request: FastifyRequest, configured: string): 'ok' | 'missing' | 'wrong' {
  const presented = request.headers.authorization?.match(/^Bearer +(\S+) *$/i)?.[1];
  if (!presented) return 'missing';
  return secretsEqual(presented, configured) ? 'ok' : 'wrong';
}
