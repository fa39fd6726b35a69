import type { AuditEntry } from '../audit';
import type { ApiServerTokenContext } from './api-server-token-context';
import { unverifiedClaims } from './logout-tokens';
import { isSameBrowser } from './browser-binding';
import { auditSsoRejection, signInWithPmSession, type SsoSignInRejection, type SsoSession, type SsoSignInSettings } from './portal-sign-in';
import { verifySsoToken, type SsoTokenRejection } from './sso-tokens';

/** `browser_mismatch`: a browser-bound token from another browser (or none), or a bound token sent to the JSON API. */
export type SsoRedemptionRejection = SsoTokenRejection | SsoSignInRejection | 'browser_mismatch';

/**
 * Who presents the token: a browser at GET /sso/redeem with the value of its binding cookie, which
 * must be the one the token is bound to; or an API consumer, who may only redeem an unbound token
 * (the token exchange's): a bound one belongs to a browser's flow.
 */
export type SsoTokenPresenter = { browserBindingCookie: string | undefined } | 'api';

export type SsoRedemption = { ok: true; session: SsoSession; pmUserId: string; pmSessionId: string } | { ok: false; reason: SsoRedemptionRejection };

export interface SsoRedemptionContext extends ApiServerTokenContext {
  settings: SsoSignInSettings;
}

/**
 * Redeems the PM app's one-time SSO token: verified against the api-server's keys (signature, `typ`,
 * issuer, audience = the portal's client id, lifetime), checked against its presenter (the browser it
 * is bound to, or the API for an unbound one), then signInWithPmSession. A token refused for its
 * presenter is not consumed and opens nothing. Every refusal is audited as SsoTokenRejected with its
 * reason; a key set that cannot be fetched or a database fault is thrown, so the caller answers 503
 * and the user may try again.
 */
export async function redeemSsoToken(
  context: SsoRedemptionContext,
  token: string,
  presenter: SsoTokenPresenter,
  origin: NonNullable<AuditEntry['origin']>,
): Promise<SsoRedemption> {
  const { db, audit, keys, issuer, clientId } = context;
  const verified = await verifySsoToken(token, keys, { issuer, audience: clientId, now: context.now() });
  if (!verified.ok) {
    const claims = unverifiedClaims(token);
    await auditSsoRejection(audit, { method: 'sso_token', reason: verified.reason, clientId, origin, pmUserId: claims.sub, pmSessionId: claims.sid });
    return { ok: false, reason: verified.reason };
  }
  const { sub, sid, jti, exp, bnd } = verified.claims;
  const presentedRightly = presenter === 'api' ? bnd === undefined : bnd !== undefined && isSameBrowser(bnd, presenter.browserBindingCookie);
  if (!presentedRightly) {
    await auditSsoRejection(audit, { method: 'sso_token', reason: 'browser_mismatch', clientId, origin, pmUserId: sub, pmSessionId: sid });
    return { ok: false, reason: 'browser_mismatch' };
  }
  const signedIn = await signInWithPmSession(db, audit, context.settings, {
    method: 'sso_token',
    pmUserId: sub,
    pmSessionId: sid,
    redemption: { jti, expiresAt: new Date(exp * 1000) },
    clientId,
    origin,
  });
  return signedIn.ok ? { ok: true, session: signedIn.session, pmUserId: sub, pmSessionId: sid } : signedIn;
}
