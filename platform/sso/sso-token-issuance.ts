import type { AuditEntry, AuditLog } from '../audit';
import type { SsoSettings } from '../config';
import type { SigningKeys } from '../oauth-server/signing-keys';
import { signSsoToken } from './sso-tokens';

export interface SsoTokenIssuer {
  /** The authorization server's keys: the portal verifies the token against its JWKS. */
  keys: SigningKeys;
  issuer: string;
  /** The authorization server's now. */
  clock: () => Date;
  audit: AuditLog;
  sso: SsoSettings;
}

/** How the user asked: the RFC 8693-shaped API, or the PM app's "Open Reality Portal" button. */
export type SsoTokenRequestKind = 'token_exchange' | 'button';

/** Single sign-on into the portal exists only when the api-server knows the portal's client (REALITY_OIDC_CLIENT_SECRET). */
export function portalSsoEnabled(sso: SsoSettings): boolean {
  return sso.portal.clientSecret !== undefined;
}

/**
 * The one-time SSO token for the signed-in PM user, for the portal's client only, audited as
 * SsoTokenIssued with its session (`sid`) and `jti`: ids the portal's redemption and SsoLogin rows name
 * too, so the two can be matched; the token itself is never recorded. `browserBinding` (the button's
 * flow) binds it to the browser that asked (`bnd`).
 */
export async function issuePortalSsoToken(
  issuer: SsoTokenIssuer,
  subject: { userId: string; sessionId: string; browserBinding?: string; origin: NonNullable<AuditEntry['origin']> },
  requestedBy: SsoTokenRequestKind,
): Promise<{ token: string; expiresInSeconds: number }> {
  const lifetimeSeconds = issuer.sso.tokenSeconds;
  const { token, jti } = await signSsoToken(await issuer.keys.activeKey(), {
    issuer: issuer.issuer,
    audience: issuer.sso.portal.clientId,
    userId: subject.userId,
    sessionId: subject.sessionId,
    ...(subject.browserBinding !== undefined ? { browserBinding: subject.browserBinding } : {}),
    lifetimeSeconds,
    now: issuer.clock(),
  });
  await issuer.audit.record({
    action: 'SsoTokenIssued',
    outcome: 'success',
    actor: { type: 'user', id: subject.userId },
    userId: subject.userId,
    clientId: issuer.sso.portal.clientId,
    origin: subject.origin,
    details: { sid: subject.sessionId, jti, requestedBy, browserBound: subject.browserBinding !== undefined, expiresInSeconds: lifetimeSeconds },
  });
  return { token, expiresInSeconds: lifetimeSeconds };
}
