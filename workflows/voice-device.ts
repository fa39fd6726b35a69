import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  log,
  patched,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { TokenState } from '../activities';
import { FailureType } from '../activities/failure-types';
import { acceptGrantFailureReason, failureOf, type VoiceDeviceFailure } from './voice-device-failures';
import { agentUserDeletion, bookkeeping, grantExchange, linkRecord, lwaRefresh, reporting } from './voice-device-activities';
import {
  acceptGrantUpdate,
  reportStateSignal,
  unlinkSignal,
  voiceDeviceStatusQuery,
  type AcceptGrantResult,
  type UnlinkDirection,
  type UnlinkSignal,
  type VoiceDeviceOutcome,
  type VoiceDeviceState,
  type VoiceDeviceWorkflowInput,
} from './voice-device-messages';

/** Each run stays far below Temporal's history limits; the state carried over is a few ids and times. */
const CYCLES_PER_RUN = 100;
/** A refusal only an operator can fix (our LWA client, an unreadable secret) is retried this slowly. */
const SLOW_RETRY_MS = 5 * 60 * 1000;
/** The report that follows an AcceptGrant tells Alexa which endpoints exist (Discovery.AddOrUpdateReport). */
const ACCEPT_GRANT_REPORT = 'accept_grant';
/** Runs that began before an unlink could cancel Google's first requestSync waited for it (up to an hour). */
const CANCELLABLE_REQUEST_SYNC_PATCH = 'cancellable-request-sync';
/** Runs that began before this folded a change report asked for while a discovery waited into that discovery. */
const CHANGE_REPORT_AFTER_DISCOVERY_PATCH = 'change-report-after-discovery';

type Failure = VoiceDeviceFailure;

/**
 * The life of one linked voice device, from its first token to its unlink. It keeps what the
 * platform needs from us alive: Alexa's Login with Amazon tokens (exchanged from AcceptGrant,
 * refreshed before each hourly expiry) and the state reports to Alexa's event gateway or Home Graph.
 * Our own device grant lives as long as the platform keeps refreshing it; when its last refresh token
 * expires unused, or the link ends from any direction, every token of the device is revoked.
 */
export async function voiceDeviceWorkflow(input: VoiceDeviceWorkflowInput): Promise<VoiceDeviceOutcome> {
  const { deviceId, platform } = input;
  const state: VoiceDeviceState = input.carriedState ?? { status: 'linked', reportsSent: 0 };
  let refreshScope: CancellationScope | undefined;
  let reportScope: CancellationScope | undefined;
  let syncScope: CancellationScope | undefined;
  let exchanges: Promise<unknown> = Promise.resolve();
  let exchanging = 0;
  let rescheduled = false;

  setHandler(unlinkSignal, (request) => requestUnlink(request.direction, request.requestedBy));
  setHandler(reportStateSignal, ({ reason }) => requestReport({ reason, at: Date.now() }));
  setHandler(voiceDeviceStatusQuery, () => state);
  setHandler(acceptGrantUpdate, () => oneAtATime(acceptGrant), {
    // Refused updates stay out of history.
    validator: () => {
      if (platform !== 'alexa') throw ApplicationFailure.nonRetryable('AcceptGrant is for Alexa devices', 'NotAlexaDevice');
      if (state.status !== 'linked' || state.unlinkRequest) throw ApplicationFailure.nonRetryable(`voice device is ${state.unlinkRequest ? 'unlinking' : state.status}`, 'VoiceDeviceNotLinked');
    },
  });

  // A run started only to unlink (signal-with-start) tells the platforms nothing first.
  if (!input.carriedState && !state.unlinkRequest) {
    if (platform === 'google') await requestSync();
    await readLink();
  }

  for (let cycle = 1; ; cycle++) {
    if (state.unlinkRequest) return unlink(state.unlinkRequest);
    if (state.status === 'unlinked') return { status: 'unlinked' };
    if (isDue(state.linkExpiresAt)) await readLink();
    else if (lwaRefreshDue()) await refreshLwa();
    else if (state.reportRequested) await report();
    else {
      rescheduled = false;
      const wakeAt = nextWakeAt();
      await (wakeAt === undefined ? condition(() => rescheduled || somethingToDo()) : condition(() => rescheduled || somethingToDo(), Math.max(1, wakeAt - Date.now())));
    }

    if (cycle >= CYCLES_PER_RUN || workflowInfo().continueAsNewSuggested) {
      await condition(allHandlersFinished);
      if (!somethingToDo()) return continueAsNew<typeof voiceDeviceWorkflow>({ ...input, carriedState: state });
    }
  }

  function isDue(at: number | undefined): boolean {
    return at !== undefined && at <= Date.now();
  }

  /** An AcceptGrant under way brings new tokens; refreshing the old ones meanwhile would be wasted. */
  function lwaRefreshDue(): boolean {
    return exchanging === 0 && isDue(state.lwa?.refreshDueAt);
  }

  function somethingToDo(): boolean {
    return Boolean(state.unlinkRequest || state.reportRequested || state.status === 'unlinked') || lwaRefreshDue() || isDue(state.linkExpiresAt);
  }

  function nextWakeAt(): number | undefined {
    const times = [state.lwa?.refreshDueAt, state.linkExpiresAt].filter((at): at is number => at !== undefined);
    return times.length > 0 ? Math.min(...times) : undefined;
  }

  function requestUnlink(direction: UnlinkDirection, requestedBy: UnlinkSignal['requestedBy']): void {
    state.unlinkRequest ??= { direction, requestedBy, receivedAt: Date.now() };
    // Nothing the platform needs matters any more; the unlink should not wait for a retrying call.
    refreshScope?.cancel();
    reportScope?.cancel();
    syncScope?.cancel();
  }

  /**
   * A discovery (AddOrUpdateReport) carries no occupancy values: a change report asked for while one
   * waits is sent after it. Any other pending report already carries the state of the moment it is sent.
   */
  function requestReport(request: NonNullable<VoiceDeviceState['reportRequested']>): void {
    if (state.reportRequested?.reason === ACCEPT_GRANT_REPORT && request.reason !== ACCEPT_GRANT_REPORT && patched(CHANGE_REPORT_AFTER_DISCOVERY_PATCH)) {
      state.reportAfterDiscovery ??= request;
    } else {
      state.reportRequested ??= request;
    }
  }

  /** A failure that ends the link, or the device found unlinked underneath us; anything else is only recorded. */
  function noteFailure(failure: Failure): void {
    state.lastError = failure;
    log.warn('voice device work failed', { deviceId, kind: failure.kind });
    if (failure.kind === FailureType.grantRevoked || failure.kind === FailureType.platformPermissionRevoked) requestUnlink('platform_permission_revoked', { type: 'platform' });
    else if (failure.kind === FailureType.agentUserGone) requestUnlink('google_disconnect', { type: 'platform' });
    // The device row says the link ended (or is ending) without us: read it now and follow it.
    else if (failure.kind === FailureType.deviceUnlinked) state.linkExpiresAt = Date.now();
  }

  /** When the link would end unless the platform used it meanwhile, or when the device row changed underneath us. */
  async function readLink(): Promise<void> {
    const link = await linkRecord.readVoiceDeviceLink({ deviceId });
    if (link.status === 'unlinked') state.status = 'unlinked';
    // A run that crashed half-way through an unlink: the next one finishes it.
    else if (link.status === 'unlinking') requestUnlink((link.unlinkReason ?? 'operator') as UnlinkDirection, { type: 'system' });
    else if (link.linkExpiresAt === null) requestUnlink('unused', { type: 'system' });
    else state.linkExpiresAt = link.linkExpiresAt;
  }

  async function requestSync(): Promise<void> {
    const scope = new CancellationScope();
    // An unlink does not wait for it: our tokens would stay live while it retries.
    if (patched(CANCELLABLE_REQUEST_SYNC_PATCH)) syncScope = scope;
    try {
      await scope.run(() => reporting.requestVoiceDeviceSync({ deviceId }));
    } catch (error) {
      if (isCancellation(error)) return;
      // Google asks for SYNC by itself after linking; a failed request only delays what it shows.
      if (!(error instanceof ActivityFailure)) throw error;
      noteFailure(failureOf(error));
    } finally {
      syncScope = undefined;
    }
  }

  /** Newer tokens only: an AcceptGrant and a refresh (or a report's forced refresh) may finish in either order. */
  function applyLwa(tokens: TokenState, refreshed: boolean): void {
    if (state.lwa && tokens.tokenVersion < state.lwa.tokenVersion) return;
    const now = Date.now();
    const margin = (input.refreshPolicy.marginSeconds + Math.random() * input.refreshPolicy.jitterSeconds) * 1000;
    state.lwa = {
      tokenVersion: tokens.tokenVersion,
      accessTokenExpiresAt: tokens.accessTokenExpiresAt,
      // A token that lives shorter than the margin is still given half its life, so refreshes cannot spin.
      refreshDueAt: Math.max(tokens.accessTokenExpiresAt - margin, now + (tokens.accessTokenExpiresAt - now) / 2),
      refreshCount: (state.lwa?.refreshCount ?? 0) + (refreshed ? 1 : 0),
    };
    rescheduled = true;
  }

  function oneAtATime<T>(work: () => Promise<T>): Promise<T> {
    const run = exchanges.then(work);
    exchanges = run.catch(() => undefined);
    return run;
  }

  async function acceptGrant(): Promise<AcceptGrantResult> {
    if (state.status !== 'linked' || state.unlinkRequest) return { accepted: false, reason: 'device_unlinked' };
    exchanging += 1;
    // The new permission supersedes the old tokens: a refresh of them that is retrying is not waited for.
    refreshScope?.cancel();
    try {
      const exchange = await grantExchange.exchangeAlexaGrant({ deviceId, knownVersion: state.lwa?.tokenVersion ?? 0 });
      if (!exchange.accepted) {
        state.lastError = { kind: exchange.reason, message: 'Login with Amazon did not accept the AcceptGrant code', at: Date.now() };
        return { accepted: false, reason: exchange.reason };
      }
      applyLwa(exchange, false);
      state.lastError = undefined;
      const pending = state.reportRequested;
      state.reportRequested = { reason: ACCEPT_GRANT_REPORT, at: Date.now() };
      if (pending) requestReport(pending);
      return { accepted: true, accessTokenExpiresAt: exchange.accessTokenExpiresAt };
    } catch (error) {
      if (!(error instanceof ActivityFailure)) throw error;
      const failure = failureOf(error);
      noteFailure(failure);
      if (failure.kind === FailureType.deviceUnlinked) return { accepted: false, reason: 'device_unlinked' };
      // Out of time or refused: the code is worthless minutes from now, so it does not stay behind.
      await bookkeeping.discardAlexaGrantCode({ deviceId });
      return { accepted: false, reason: acceptGrantFailureReason(error) };
    } finally {
      exchanging -= 1;
    }
  }

  async function refreshLwa(): Promise<void> {
    const lwa = state.lwa!;
    const scope = new CancellationScope();
    refreshScope = scope;
    try {
      applyLwa(await scope.run(() => lwaRefresh.refreshAlexaTokens({ deviceId, expectedVersion: lwa.tokenVersion })), true);
      state.lastError = undefined;
    } catch (error) {
      if (isCancellation(error)) return; // an unlink or an AcceptGrant came; the loop sees to it
      if (!(error instanceof ActivityFailure)) throw error;
      const failure = failureOf(error);
      noteFailure(failure);
      if (!state.unlinkRequest && state.lwa === lwa) lwa.refreshDueAt = Date.now() + SLOW_RETRY_MS;
    } finally {
      refreshScope = undefined;
    }
  }

  async function report(): Promise<void> {
    const request = state.reportRequested!;
    state.reportRequested = request.reason === ACCEPT_GRANT_REPORT ? state.reportAfterDiscovery : undefined;
    state.reportAfterDiscovery = undefined;
    const scope = new CancellationScope();
    reportScope = scope;
    try {
      const sent = await scope.run(() => reporting.sendVoiceStateReport({ deviceId, discovery: request.reason === ACCEPT_GRANT_REPORT }));
      if (sent.lwa) applyLwa(sent.lwa, true);
      if (sent.outcome === 'sent') state.reportsSent += 1;
    } catch (error) {
      if (isCancellation(error)) return;
      if (!(error instanceof ActivityFailure)) throw error;
      // A report that could not be delivered is dropped; the next one carries the state of its day.
      noteFailure(failureOf(error));
    } finally {
      reportScope = undefined;
    }
  }

  async function unlink(request: NonNullable<VoiceDeviceState['unlinkRequest']>): Promise<VoiceDeviceOutcome> {
    state.status = 'unlinking';
    const status = await bookkeeping.revokeVoiceDeviceLink({ deviceId, direction: request.direction, requestedBy: request.requestedBy });
    let agentUser: VoiceDeviceOutcome['agentUser'];
    if (status === 'unlinking') {
      try {
        const deleted = await agentUserDeletion.deleteGoogleAgentUser({ deviceId });
        if (deleted !== 'not_google') agentUser = deleted;
      } catch (error) {
        if (!(error instanceof ActivityFailure)) throw error;
        state.lastError = failureOf(error);
        agentUser = 'failed';
        await bookkeeping.abandonGoogleAgentUserDeletion({ deviceId, error: state.lastError.message });
      }
    }
    state.status = 'unlinked';
    state.lwa = undefined;
    state.reportRequested = undefined;
    state.reportAfterDiscovery = undefined;
    await condition(allHandlersFinished);
    return { status: 'unlinked', direction: request.direction, ...(agentUser ? { agentUser } : {}) };
  }
}
