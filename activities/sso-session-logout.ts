import { ApplicationFailure, Context } from '@temporalio/activity';
import { findClient } from '../db/queries/oauth-clients';
import type { SigningKeys } from '../platform/oauth-server/signing-keys';
import { apiServerBackchannelLogoutUri, portalBackchannelLogoutUri, postLogoutToken } from '../platform/sso/backchannel-delivery';
import { signLogoutToken } from '../platform/sso/logout-tokens';
import type { ActivityDependencies } from './dependencies';
import { FailureType } from './failure-types';

/** The PM session (`sid`) and PM user (`sub`) a logout token names. */
export interface LogoutTokenSubject {
  pmSessionId: string;
  pmUserId: string;
}

/** A delivery the receiver acknowledged: its HTTP status and the attempt that landed. */
export interface BackchannelDelivered {
  status: number;
  attempts: number;
}

/** What a failed attempt tells the workflow (ApplicationFailure details): ids and numbers, never the token. */
export interface BackchannelFailureDetails {
  status: number | null;
  attempts: number;
}

/**
 * OpenID Connect Back-Channel Logout 1.0 deliveries, one per direction. Each attempt signs a new
 * logout token (its own `jti` and a fresh `iat`) inside the activity, so no token reaches Temporal's
 * history; a receiver that had already ended the session answers 200 again, so a repeat is harmless.
 */
export function createSsoSessionLogoutActivities({ db, sso, clock }: Pick<ActivityDependencies, 'db' | 'sso' | 'clock'>) {
  async function deliver(keys: SigningKeys, claims: { issuer: string; audience: string }, uri: string, subject: LogoutTokenSubject): Promise<BackchannelDelivered> {
    const { token } = await signLogoutToken(await keys.activeKey(), {
      ...claims,
      sessionId: subject.pmSessionId,
      subject: subject.pmUserId,
      now: clock(),
      lifetimeSeconds: sso.logoutTokenSeconds,
    });
    const context = Context.current();
    const attempts = context.info.attempt;
    const answer = await postLogoutToken(uri, token, { timeoutSeconds: sso.deliveryTimeoutSeconds, signal: context.cancellationSignal });
    if (answer.outcome === 'delivered') return { status: answer.status!, attempts };
    const details: BackchannelFailureDetails = { status: answer.status, attempts };
    throw ApplicationFailure.create({
      message: answer.message,
      type: answer.outcome === 'refused' ? FailureType.backchannelLogoutRefused : FailureType.backchannelLogoutUndelivered,
      nonRetryable: answer.outcome === 'refused',
      details: [details],
    });
  }

  return {
    /** The api-server's logout token, to the portal client's backchannel_logout_uri (else the reality-server's receiver). */
    async deliverLogoutToPortal(input: LogoutTokenSubject): Promise<BackchannelDelivered> {
      const client = await findClient(db, sso.portal.clientId);
      const uri = portalBackchannelLogoutUri(sso, client?.backchannelLogoutUri ?? null);
      return deliver(sso.authorizationServerKeys, { issuer: sso.issuer, audience: sso.portal.clientId }, uri, input);
    },

    /** The portal's logout token (the reality-server's keys), to the api-server's receiver. */
    async deliverLogoutToApiServer(input: LogoutTokenSubject): Promise<BackchannelDelivered> {
      return deliver(sso.realityServerKeys, { issuer: sso.portal.publicUrl, audience: sso.issuer }, apiServerBackchannelLogoutUri(sso), input);
    },
  };
}
