import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { OAuthError } from '../../../platform/oauth-server/errors';
import { SigningKeys } from '../../../platform/oauth-server/signing-keys';
import { TokenGrants } from '../../../platform/oauth-server/token-grants';
import { TokenIssuer } from '../../../platform/oauth-server/token-issuer';

/** What the authorization server's plugins share, built once from the api-server's services. */
export interface AuthorizationServer {
  issuer: string;
  keys: SigningKeys;
  tokens: TokenIssuer;
  grants: TokenGrants;
}

declare module 'fastify' {
  interface FastifyInstance {
    authorizationServer: AuthorizationServer;
  }
}

/** Decorates the app with the authorization server's services; the OAuth routes live in sibling plugins. */
export const authorizationServerServices = fp(async function authorizationServerServices(app: FastifyInstance) {
  const { db, crypto, audit, config } = app.services;
  const { issuer, signingKeyGraceSeconds } = config.authorizationServer;
  const keys = new SigningKeys(db, crypto, signingKeyGraceSeconds);
  const tokens = new TokenIssuer(keys, {
    issuer,
    audience: issuer,
    accessTokenSeconds: config.lifetimes.accessTokenSeconds,
    refreshTokenSeconds: config.lifetimes.refreshTokenSeconds,
    deviceRefreshTokenSeconds: config.lifetimes.deviceRefreshTokenSeconds,
  });
  app.decorate('authorizationServer', { issuer, keys, tokens, grants: new TokenGrants(db, tokens, audit) });
});

/**
 * RFC 6749 section 5.2 answers for the OAuth endpoints: `{ error, error_description }`, 401 with
 * `WWW-Authenticate` for invalid_client, and invalid_request for anything the schemas refused.
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
      return reply.code(error.statusCode).send({ error: error.code, error_description: error.description });
    }
    const status = (error as { statusCode?: number }).statusCode;
    if ((error as { validation?: unknown }).validation || (status && status >= 400 && status < 500)) {
      return reply.code(status === 429 ? 429 : 400).send({
        error: status === 429 ? 'temporarily_unavailable' : 'invalid_request',
        error_description: (error as Error).message,
      });
    }
    request.log.error({ err: error }, 'OAuth request failed');
    return reply.code(500).send({ error: 'server_error', error_description: 'An unexpected error occurred' });
  });
}
