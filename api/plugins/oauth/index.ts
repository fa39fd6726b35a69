import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { SigningKeys } from '../../../platform/oauth-server/signing-keys';
import { TokenGrants } from '../../../platform/oauth-server/token-grants';
import { TokenIssuer } from '../../../platform/oauth-server/token-issuer';
import { FailedClientAuthentications } from './client-request';

/** What the authorization server's plugins share, built once from the api-server's services. */
export interface AuthorizationServer {
  issuer: string;
  keys: SigningKeys;
  tokens: TokenIssuer;
  /** The grant-type handlers of the token endpoint. */
  tokenEndpoint: TokenGrants;
  /** The per-address limit on failed client authentications (token, introspection, revocation). */
  failedClientAuthentications: FailedClientAuthentications;
}

declare module 'fastify' {
  interface FastifyInstance {
    authorizationServer: AuthorizationServer;
  }
}

/** Decorates the app with the authorization server's services; the OAuth routes live in sibling plugins. */
export const authorizationServerServices = fp(async function authorizationServerServices(app: FastifyInstance) {
  const { db, crypto, audit, config, clock } = app.services;
  const { issuer, audience, signingKeyGraceSeconds } = config.authorizationServer;
  const keys = new SigningKeys(db, crypto, signingKeyGraceSeconds);
  const tokens = new TokenIssuer(
    keys,
    {
      issuer,
      audience,
      accessTokenSeconds: config.lifetimes.accessTokenSeconds,
      refreshTokenSeconds: config.lifetimes.refreshTokenSeconds,
      deviceRefreshTokenSeconds: config.lifetimes.deviceRefreshTokenSeconds,
      idTokenSeconds: config.sso.idTokenSeconds,
    },
    clock,
  );
  app.decorate('authorizationServer', {
    issuer,
    keys,
    tokens,
    tokenEndpoint: new TokenGrants(db, tokens, audit, crypto, { voiceRefreshGraceSeconds: config.voice.refreshGraceSeconds }),
    failedClientAuthentications: new FailedClientAuthentications(),
  });
});

