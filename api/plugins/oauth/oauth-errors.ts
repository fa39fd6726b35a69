import type { FastifyInstance } from 'fastify';
import { OAuthError, type OAuthErrorCode } from '../../../platform/oauth-server/errors';
import { isClientError } from '../../errors';
import { askToRetryLater, isTransientFault } from '../errors';


function send(reply: Parameters<Parameters<FastifyInstance['setErrorHandler']>[0]>[2], status: number, error: OAuthErrorCode, description: string) {
  return reply.code(status).send({ error, error_description: description });
}

/**
 * RFC 6749 section 5.2 answers for the OAuth endpoints: `{ error, error_description }`, 401 with
 * `WWW-Authenticate` for invalid_client, invalid_request for anything the schemas refused, and 503
 * temporarily_unavailable with Retry-After for a transient fault.
 * Responses carrying tokens or errors are never cached (section 5.1).
 */
export function answerOAuthErrors(app: FastifyInstance): void {
  app.addHook('onSend', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
    reply.header('pragma', 'no-cache');
  });
  app.setErrorHandler((error, request, reply) => {
    if (error instanceof OAuthError) {
      if (error.code === 'invalid_client') reply.header('www-authenticate', 'Basic realm="oauth", charset="UTF-8"');
      return send(reply, error.statusCode, error.code, error.description);
    }
    if (isClientError(error)) {
      return error.statusCode === 429
        ? send(reply, 429, 'temporarily_unavailable', error.message)
        : send(reply, 400, 'invalid_request', error.message);
    }
    // Alexa and Google unlink the user on invalid_grant: a fault of ours that passes must say "try again".
    if (isTransientFault(error)) {
      request.log.warn({ err: error }, 'OAuth request failed on a transient fault');
      return send(askToRetryLater(reply), 503, 'temporarily_unavailable', 'The service is briefly unavailable; try again shortly');
    }
    request.log.error({ err: error }, 'OAuth request failed');
    return send(reply, 500, 'server_error', 'An unexpected error occurred');
  });
}
