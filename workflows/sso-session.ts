import { ActivityFailure, ApplicationFailure, condition, continueAsNew, log, setHandler, workflowInfo } from '@temporalio/workflow';
import type { BackchannelFailureDetails } from '../activities/sso-session-logout';
import type { SsoSessionPairEnding, SsoSessionPairView } from '../activities/sso-session-pair';
import { FailureType } from '../activities/failure-types';
import { backchannelDelivery, pairRecord } from './sso-session-activities';
import {
  pmSessionEndedSignal,
  portalSessionEndedSignal,
  rolesChangedSignal,
  ssoSessionStatusQuery,
  type PmSessionEndedSignal,
  type SsoLogoutInitiator,
  type SsoSessionOutcome,
  type SsoSessionState,
  type SsoSessionWorkflowInput,
} from './sso-session-messages';

/** Each run stays far below Temporal's history limits; the state carried over is a few ids and times. */
const CYCLES_PER_RUN = 100;

type Logout = NonNullable<SsoSessionState['logout']>;
type LogoutRequest = Omit<Logout, 'receivedAt'>;
type Receiver = NonNullable<Logout['receiver']>;
type Delivery = NonNullable<SsoSessionPairEnding['delivery']>;

const PM_SIGNAL_INITIATORS: Record<PmSessionEndedSignal['reason'], SsoLogoutInitiator> = {
  logout: 'pm',
  revoked: 'pm',
  user_disabled: 'user_disabled',
};
/** What a session's ended_reason says about who ended it, when it says more than the side's own logout. */
const ENDED_REASON_INITIATORS = new Map<string, SsoLogoutInitiator>([
  ['user_disabled', 'user_disabled'],
  ['portal_logout', 'portal'],
  ['idle', 'idle_expiry'],
  ['expired', 'absolute_expiry'],
  ['replaced', 'replaced'],
]);
/** The ended_reason of the portal session (and of the PM session, when its own time has come too) on an expiry. */
const EXPIRY_REASONS = new Map<SsoLogoutInitiator, string>([
  ['idle_expiry', 'idle'],
  ['absolute_expiry', 'expired'],
]);

/**
 * The life of an SSO pair: a portal session that began with single sign-on and the PM session (`sid`)
 * it came from. While both live, the portal follows the PM user's roles. A logout on one side is
 * carried to the other by OpenID Connect Back-Channel Logout (retried with backoff until the deadline;
 * a refused or undelivered one is made good by ending that session here, in the shared database), a
 * disabled PM user loses the portal at once, and when neither session was used for the idle time, or
 * the PM session's absolute expiry comes, both end here. The portal session's own expiry (or its
 * replacement by a new sign-in in the same browser) ends only the portal session: the PM session keeps
 * its own lifetime. The workflow sleeps until the next such deadline, wakes for signals, and reads the
 * pair itself when it wakes, so a lost signal costs at most the idle time.
 */
export async function ssoSessionWorkflow(input: SsoSessionWorkflowInput): Promise<SsoSessionOutcome> {
  const pair = { portalSessionId: input.portalSessionId, pmSessionId: input.pmSessionId, pmUserId: input.pmUserId };
  const idleMs = input.idleSeconds * 1000;
  const delivery = backchannelDelivery(input.backchannelLogoutDeadlineSeconds);
  const state: SsoSessionState = input.carriedState ?? { status: 'active', rolesApplied: 0, deliveries: [] };
  let rolesChanged = false;

  setHandler(pmSessionEndedSignal, ({ reason }) => requestLogout({ initiatedBy: PM_SIGNAL_INITIATORS[reason], receiver: 'reality-server', pmReason: reason }));
  setHandler(portalSessionEndedSignal, () => requestLogout({ initiatedBy: 'portal', receiver: 'api-server' }));
  setHandler(rolesChangedSignal, () => {
    rolesChanged = true;
  });
  setHandler(ssoSessionStatusQuery, () => state);

  // The sessions may have changed between the portal's login and this start.
  if (!input.carriedState) await check();

  for (let cycle = 1; ; cycle++) {
    if (state.logout) {
      const outcome = await end(state.logout);
      if (outcome) return outcome;
    } else if (rolesChanged) await applyRoles();
    else {
      state.nextCheckAt = nextCheckAt();
      const signalled = await condition(() => Boolean(state.logout) || rolesChanged, Math.max(1, state.nextCheckAt - Date.now()));
      if (!signalled) await check();
    }

    if ((cycle >= CYCLES_PER_RUN || workflowInfo().continueAsNewSuggested) && !state.logout && !rolesChanged) {
      return continueAsNew<typeof ssoSessionWorkflow>({ ...input, carriedState: state });
    }
  }

  /** The first end wins; only an idle expiry, which a use of the pair may still call off, gives way to a later one. */
  function requestLogout(request: LogoutRequest): void {
    if (state.logout && state.logout.unusedSince === undefined) return;
    state.logout = { ...request, receivedAt: Date.now() };
  }

  /** The idle deadline, the absolute expiry, whichever comes first (and so at least once per idle time). */
  function nextCheckAt(): number {
    return Math.min((state.lastActivityAt ?? Date.now()) + idleMs, state.expiresAt ?? input.expiresAt);
  }

  /** Reads both sessions and the PM user, and acts on what a signal did not say. */
  async function check(): Promise<void> {
    const view = await pairRecord.readSsoSessionPair(pair);
    const now = Date.now();
    if (view.lastActivityAt !== null) state.lastActivityAt = view.lastActivityAt;
    state.expiresAt = Math.min(input.expiresAt, view.portalExpiresAt ?? input.expiresAt, view.pmExpiresAt ?? input.expiresAt);
    const ended = endingOf(view);
    if (ended) requestLogout(ended);
    // The PM session's own expiry ends both; the portal session's ends only the portal session.
    else if (view.pmExpiresAt !== null && view.pmExpiresAt <= now) requestLogout({ initiatedBy: 'absolute_expiry', pmReason: 'expired' });
    else if (view.portalExpiresAt !== null && view.portalExpiresAt <= now) requestLogout({ initiatedBy: 'absolute_expiry' });
    // Neither session used for the idle time: the PM session's own idle time has passed as well.
    else if (view.lastActivityAt !== null && view.lastActivityAt + idleMs <= now) requestLogout({ initiatedBy: 'idle_expiry', pmReason: 'idle', unusedSince: view.lastActivityAt });
    else if (view.rolesOutdated) rolesChanged = true;
  }

  async function applyRoles(): Promise<void> {
    rolesChanged = false;
    const applied = await pairRecord.applySsoSessionRoles({ pmUserId: pair.pmUserId });
    state.rolesApplied += 1;
    if (applied) state.rolesVersionApplied = applied.rolesVersion;
  }

  /** Tells the other side (when there is one to tell), then ends what is still live and records the end. */
  async function end(logout: Logout): Promise<SsoSessionOutcome | undefined> {
    state.status = 'ending';
    const sent = logout.receiver ? await deliver(logout.receiver) : undefined;
    const finished = await pairRecord.finishSsoSessionPair({
      ...pair,
      workflowId: workflowInfo().workflowId,
      initiatedBy: logout.initiatedBy,
      ...endedReasons(logout, sent),
      ...(logout.unusedSince !== undefined ? { unusedSince: logout.unusedSince } : {}),
      ...(sent ? { delivery: sent } : {}),
    });
    if (finished === 'in_use') {
      // Used since it was read: the pair lives on, and the next check reads when.
      state.status = 'active';
      if (state.logout === logout) state.logout = undefined;
      return undefined;
    }
    state.status = 'ended';
    state.logout = logout;
    return { status: 'ended', initiatedBy: logout.initiatedBy, ...(sent ? { backchannelDelivered: sent.outcome === 'delivered' } : {}) };
  }

  async function deliver(receiver: Receiver): Promise<Delivery> {
    const send = receiver === 'reality-server' ? delivery.deliverLogoutToPortal : delivery.deliverLogoutToApiServer;
    let result: Delivery;
    try {
      const delivered = await send({ pmSessionId: pair.pmSessionId, pmUserId: pair.pmUserId });
      result = { receiver, outcome: 'delivered', attempts: delivered.attempts, status: delivered.status };
    } catch (error) {
      if (!(error instanceof ActivityFailure)) throw error;
      const last = lastAttemptOf(error);
      result = { receiver, outcome: last.refused ? 'refused' : 'undelivered', attempts: last.details?.attempts ?? null, status: last.details?.status ?? null };
      state.lastError = { kind: last.kind, message: last.message, at: Date.now() };
      log.warn('back-channel logout not delivered; the session is ended directly', { receiver, outcome: result.outcome, status: result.status });
    }
    state.deliveries.push({ receiver, delivered: result.outcome === 'delivered', at: Date.now(), attempts: result.attempts, status: result.status });
    return result;
  }
}

/** What the pair's records say ended it, when a side has ended or the PM user is disabled. */
function endingOf(view: SsoSessionPairView): LogoutRequest | undefined {
  const pmSide: LogoutRequest | undefined = view.userDisabled
    ? { initiatedBy: 'user_disabled', pmReason: 'user_disabled' }
    : view.pmEnded !== null
      ? { initiatedBy: ENDED_REASON_INITIATORS.get(view.pmEnded) ?? 'pm', pmReason: view.pmEnded }
      : undefined;
  // The portal is told of a logout; an expiry the shared database shows is carried out here.
  if (view.portalEnded === null) return pmSide && (EXPIRY_REASONS.has(pmSide.initiatedBy) ? pmSide : { ...pmSide, receiver: 'reality-server' });
  // The portal's sign-out whose signal was lost: the PM side has yet to hear of it.
  if (view.portalEnded === 'logout' && !pmSide) return { initiatedBy: 'portal', receiver: 'api-server' };
  // The portal session ended on its own (a portal request saw the pair end, a logout token reached it, a
  // new sign-in replaced it). The PM session ends with it only when the pair went idle, which is the PM
  // session's own idle time too: the portal's own expiry or its replacement leaves the PM session be.
  const initiatedBy = ENDED_REASON_INITIATORS.get(view.portalEnded) ?? pmSide?.initiatedBy ?? (view.portalEnded.startsWith('pm_') ? 'pm' : 'portal');
  if (pmSide) return { ...pmSide, initiatedBy };
  return view.portalEnded === 'idle' ? { initiatedBy, pmReason: 'idle' } : { initiatedBy };
}

/**
 * The ended_reason of each session the end has yet to end. The portal session never outlives the pair;
 * the PM session is ended here only for a reason of its own (`pmReason`) or the portal's logout.
 */
function endedReasons(logout: Logout, sent: Delivery | undefined): Pick<SsoSessionPairEnding, 'endPortal' | 'endPm'> {
  const pm = logout.pmReason ? { endPm: logout.pmReason } : {};
  const expiry = EXPIRY_REASONS.get(logout.initiatedBy);
  if (expiry) return { endPortal: expiry, ...pm };
  if (logout.receiver === 'api-server') return { endPortal: 'logout', endPm: 'portal_logout' };
  if (logout.receiver !== 'reality-server' || !sent) return pm;
  return { ...pm, endPortal: sent.outcome === 'delivered' ? 'pm_logout' : `backchannel_${sent.outcome}` };
}

/** The receiver's last answer, from the failure of the last attempt (past the deadline: the timeout's cause). */
function lastAttemptOf(error: ActivityFailure): { kind: string; message: string; refused: boolean; details: BackchannelFailureDetails | undefined } {
  const first = error.cause;
  const kind = first instanceof ApplicationFailure ? (first.type ?? 'ApplicationFailure') : (first?.name ?? 'ActivityFailure');
  let cause: unknown = first;
  while (cause instanceof Error && !(cause instanceof ApplicationFailure)) cause = cause.cause;
  const application = cause instanceof ApplicationFailure ? cause : undefined;
  return {
    kind,
    message: application?.message ?? first?.message ?? error.message,
    refused: application?.type === FailureType.backchannelLogoutRefused,
    details: application?.details?.[0] as BackchannelFailureDetails | undefined,
  };
}
