import type { JWTVerifyGetKey } from 'jose';
import type { DatabasePool } from 'slonik';
import type { AuditLog } from '../audit';
import type { Config } from '../config';

/** What the portal needs to act on a token the api-server signed (an SSO token, a logout token). */
export interface ApiServerTokenContext {
  db: DatabasePool;
  audit: AuditLog;
  /** The api-server's keys (platform/sso/api-server-keys.ts). */
  keys: JWTVerifyGetKey;
  now: () => Date;
  /** The api-server's issuer (the tokens' `iss`) and the portal's client id (their `aud`). */
  issuer: string;
  clientId: string;
}

export function apiServerTokenContext(portal: { db: DatabasePool; audit: AuditLog; config: Config; apiServerKeys: JWTVerifyGetKey; clock: () => Date }): ApiServerTokenContext {
  const { db, audit, config, apiServerKeys, clock } = portal;
  return { db, audit, keys: apiServerKeys, now: clock, issuer: config.authorizationServer.issuer, clientId: config.sso.portal.clientId };
}
