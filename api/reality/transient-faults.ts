import type { FastifyReply, FastifyRequest } from 'fastify';
import { KeySetUnavailable } from '../../platform/sso/api-server-keys';
import { isTransientOidcFailure } from '../../platform/sso/portal-relying-party';
import { askToRetryLater, isTransientFault } from '../plugins/errors';

/** A fault that passes (database, the api-server's keys or endpoints): 503, never a refusal the user would take as final. */
export function isTransientPortalFault(error: unknown): boolean {
  return isTransientFault(error) || error instanceof KeySetUnavailable || isTransientOidcFailure(error);
}

/**
 * Route error handler of the portal's JSON routes that reach the api-server (its key set): a transient
 * fault there is a 503 like a database fault; everything else goes on to the app's error handler.
 */
export function jsonTransientFaultHandler(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (!isTransientPortalFault(error)) throw error;
  request.log.warn({ err: error }, 'request failed on a transient fault');
  return askToRetryLater(reply).send({ error: 'temporarily_unavailable', message: 'The service is briefly unavailable; try again shortly' });
}
