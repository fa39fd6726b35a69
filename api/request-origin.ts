import type { FastifyRequest } from 'fastify';
import type { AuditEntry } from '../platform/audit';

/** Where a request came from, for audit rows: the caller's address and (bounded) user agent. */
export function requestOrigin(request: FastifyRequest): NonNullable<AuditEntry['origin']> {
  const userAgent = request.headers['user-agent'];
  return { ip: request.ip, userAgent: userAgent ? userAgent.slice(0, 512) : '' };
}
