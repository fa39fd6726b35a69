import { defineQuery, defineSignal } from '@temporalio/workflow';

/**
 * The SSO session workflow's messages: one workflow per portal session that began with single sign-on
 * (`sso-session:<portalSessionId>`), keeping it in step with the PM session it came from. Messages
 * carry ids, times and reasons only; session tokens never leave Postgres, and only as hashes.
 */

export function ssoSessionWorkflowId(portalSessionId: string): string {
  return `sso-session:${portalSessionId}`;
}

/**
 * The side whose action ended the pair; audited as `initiatedBy` of SsoLogout. `replaced`: a new sign-in
 * in the same browser ended the portal session (its PM session lives on).
 */
export type SsoLogoutInitiator = 'pm' | 'portal' | 'idle_expiry' | 'absolute_expiry' | 'user_disabled' | 'replaced';

export interface SsoSessionWorkflowInput {
  portalSessionId: string;
  /** The PM session (`sid`) the portal session came from. */
  pmSessionId: string;
  pmUserId: string;
  /** SESSION_IDLE_SECONDS: the pair ends when neither session was used for this long. */
  idleSeconds: number;
  /** Epoch ms: the earlier of the portal session's and the PM session's absolute expiry. */
  expiresAt: number;
  /** SSO_BACKCHANNEL_LOGOUT_DEADLINE_SECONDS: how long one logout delivery is retried. */
  backchannelLogoutDeadlineSeconds: number;
  /** Set only by continue-as-new. */
  carriedState?: SsoSessionState;
}

export interface SsoSessionState {
  status: 'active' | 'ending' | 'ended';
  /** The roles_version of the PM user last applied to the portal session. */
  rolesVersionApplied?: number;
  rolesApplied: number;
  /** The later last use of the two sessions, as last read (epoch ms). */
  lastActivityAt?: number;
  /** The pair's absolute expiry: the input's, or an earlier one read from the sessions (epoch ms). */
  expiresAt?: number;
  /** When the workflow next reads the pair unless a signal comes first (epoch ms). */
  nextCheckAt?: number;
  logout?: {
    initiatedBy: SsoLogoutInitiator;
    receivedAt: number;
    /** The side that is told by back-channel logout; absent when both sessions end here, or had ended already. */
    receiver?: 'api-server' | 'reality-server';
    /** Why the PM side ended, or is to end here (pmSessionEnded's reason, what the pair's records said, or its own expiry). */
    pmReason?: string;
    /** Idle expiry: the last use it was decided on; a use since keeps the pair alive. */
    unusedSince?: number;
  };
  /** Back-channel deliveries: which receiver, whether it answered 2xx, the attempt it took and the last HTTP status. */
  deliveries: Array<{ receiver: 'api-server' | 'reality-server'; delivered: boolean; at: number; attempts: number | null; status: number | null }>;
  lastError?: { kind: string; message: string; at: number };
}

/** The PM session ended (logout at the api-server, RP-initiated logout, revocation): log the portal out. */
export interface PmSessionEndedSignal {
  reason: 'logout' | 'revoked' | 'user_disabled';
}

/** The portal session ended at the portal (its sign-out): log the PM session out. */
export interface PortalSessionEndedSignal {
  reason: 'logout';
}

export const pmSessionEndedSignal = defineSignal<[PmSessionEndedSignal]>('pmSessionEnded');
export const portalSessionEndedSignal = defineSignal<[PortalSessionEndedSignal]>('portalSessionEnded');
/** The PM user's roles (or a mapping they use) changed: apply the mapped roles to the portal session now. */
export const rolesChangedSignal = defineSignal<[]>('rolesChanged');
export const ssoSessionStatusQuery = defineQuery<SsoSessionState>('status');

/** How the workflow ended. */
export interface SsoSessionOutcome {
  status: 'ended';
  initiatedBy: SsoLogoutInitiator;
  /** Whether the other side acknowledged the back-channel logout (absent when none was sent). */
  backchannelDelivered?: boolean;
}
