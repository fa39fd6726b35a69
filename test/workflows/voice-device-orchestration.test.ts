import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Activities } from '../../activities';
import { FailureType } from '../../activities/failure-types';
import type { VoiceDeviceLink } from '../../activities/voice-device-link';
import type { voiceDeviceWorkflow } from '../../workflows/voice-device';
import {
  acceptGrantUpdate,
  reportStateSignal,
  unlinkSignal,
  voiceDeviceStatusQuery,
  voiceDeviceWorkflowId,
  type UnlinkSignal,
  type VoiceDeviceState,
  type VoicePlatform,
} from '../../workflows/voice-device-messages';
import { startScriptedWorker, startTimeSkippingServer, type ScriptedWorker } from '../helpers/temporal';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const LWA_LIFETIME_MS = HOUR;
const MARGIN_SECONDS = 300;

type Call = { name: string; input: Record<string, unknown>; at: number };

/**
 * The voice-device workflow's orchestration against scripted activities (its own collaborators):
 * what runs when, what ends the link, and what an unlink does. test/workflows/voice-device.test.ts
 * runs the real activities against the platforms' fakes.
 */
describe('voice-device workflow: orchestration', () => {
  let temporal: TestWorkflowEnvironment;
  let worker: ScriptedWorker;
  let calls: Call[];
  let script: {
    link: () => VoiceDeviceLink;
    refreshFailure?: () => ApplicationFailure;
    reportFailure?: () => ApplicationFailure;
    syncFailure?: () => ApplicationFailure;
    /** Reports wait for this before they answer. */
    reportHeld?: Promise<void>;
    releaseReports?: () => void;
    exchange: () => Awaited<ReturnType<Activities['exchangeAlexaGrant']>> | ApplicationFailure;
    revokeStatus: 'unlinked' | 'unlinking';
  };
  let version = 0;
  let started: WorkflowHandle<typeof voiceDeviceWorkflow>[] = [];

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    const now = () => temporal.currentTimeMs();
    const record = async (name: string, input: object) => {
      calls.push({ name, input: { ...input }, at: await now() });
    };
    const tokens = async () => ({ tokenVersion: ++version, accessTokenExpiresAt: (await now()) + LWA_LIFETIME_MS });
    const activities: Partial<Activities> = {
      readVoiceDeviceLink: async (input) => (await record('readLink', input), script.link()),
      requestVoiceDeviceSync: async (input) => {
        await record('requestSync', input);
        if (script.syncFailure) throw script.syncFailure();
        return 'requested' as const;
      },
      exchangeAlexaGrant: async (input) => {
        await record('exchange', input);
        const outcome = script.exchange();
        if (outcome instanceof ApplicationFailure) throw outcome;
        return outcome.accepted ? { accepted: true, ...(await tokens()) } : outcome;
      },
      discardAlexaGrantCode: async (input) => void (await record('discardCode', input)),
      refreshAlexaTokens: async (input) => {
        await record('refresh', input);
        if (script.refreshFailure) throw script.refreshFailure();
        return tokens();
      },
      sendVoiceStateReport: async (input) => {
        await record('report', input);
        await script.reportHeld;
        if (script.reportFailure) throw script.reportFailure();
        return { outcome: 'sent' as const, events: 1 };
      },
      revokeVoiceDeviceLink: async (input) => (await record('revoke', input), script.revokeStatus),
      deleteGoogleAgentUser: async (input) => (await record('deleteAgentUser', input), 'deleted' as const),
      abandonGoogleAgentUserDeletion: async (input) => void (await record('abandonAgentUser', input)),
    };
    worker = await startScriptedWorker({ temporal, activities, taskQueuePrefix: 'voice-orchestration' });
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.teardown();
  });

  beforeEach(async () => {
    calls = [];
    started = [];
    const linkExpiresAt = (await temporal.currentTimeMs()) + 365 * DAY;
    script = {
      link: () => ({ status: 'linked', linkExpiresAt, unlinkReason: null }),
      exchange: () => ({ accepted: true, tokenVersion: 0, accessTokenExpiresAt: 0 }),
      revokeStatus: 'unlinked',
    };
  });

  // A case that failed half-way leaves no held report and no running device behind to act in the next case.
  afterEach(async () => {
    script.releaseReports?.();
    script = { ...script, reportHeld: undefined, refreshFailure: undefined, reportFailure: undefined, syncFailure: undefined, revokeStatus: 'unlinked' };
    for (const handle of started) {
      const { status } = await handle.describe();
      if (status.name !== 'RUNNING') continue;
      await handle.signal(unlinkSignal, { direction: 'operator', requestedBy: { type: 'operator', id: 'test-cleanup' } });
      await handle.result();
    }
  });

  const names = () => calls.map((call) => call.name);

  async function until(predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`never happened; calls: ${names().join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async function untilState(handle: WorkflowHandle<typeof voiceDeviceWorkflow>, predicate: (state: VoiceDeviceState) => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let state = await handle.query(voiceDeviceStatusQuery); !predicate(state); state = await handle.query(voiceDeviceStatusQuery)) {
      if (Date.now() > deadline) throw new Error(`never happened; state: ${JSON.stringify(state)}; calls: ${names().join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async function start(platform: VoicePlatform, carriedState?: VoiceDeviceState, { awaitLinkRead = true } = {}) {
    const deviceId = randomUUID();
    const handle = await temporal.client.workflow.start<typeof voiceDeviceWorkflow>('voiceDeviceWorkflow', {
      workflowId: voiceDeviceWorkflowId(platform, deviceId),
      taskQueue: worker.taskQueue,
      args: [{ deviceId, platform, refreshPolicy: { marginSeconds: MARGIN_SECONDS, jitterSeconds: 60 }, ...(carriedState ? { carriedState } : {}) }],
    });
    started.push(handle);
    if (awaitLinkRead) await until(() => calls.some((call) => call.name === 'readLink' && call.input.deviceId === deviceId) || carriedState !== undefined);
    return handle;
  }

  async function linkedAlexa() {
    const handle = await start('alexa');
    const granted = await handle.executeUpdate(acceptGrantUpdate);
    expect(granted).toMatchObject({ accepted: true });
    await until(() => names().includes('report'));
    return handle;
  }

  it('exchanges an AcceptGrant, reports discovery once, then refreshes LWA tokens before each expiry and continues as new', async () => {
    const handle = await linkedAlexa();
    expect(names().slice(0, 3)).toEqual(['readLink', 'exchange', 'report']);
    expect(calls.find((call) => call.name === 'report')!.input).toMatchObject({ discovery: true });
    const firstRunId = (await handle.describe()).runId;

    await temporal.sleep(5 * DAY);
    const refreshes = calls.filter((call) => call.name === 'refresh');
    expect(refreshes.length).toBeGreaterThanOrEqual(5 * 24);
    const lifetimeBefore = [calls.find((call) => call.name === 'exchange')!, ...refreshes];
    for (let index = 1; index < lifetimeBefore.length; index++) {
      const gap = lifetimeBefore[index]!.at - lifetimeBefore[index - 1]!.at;
      expect(gap).toBeLessThan(LWA_LIFETIME_MS);
      expect(gap).toBeGreaterThanOrEqual(LWA_LIFETIME_MS - (MARGIN_SECONDS + 60) * 1000);
    }
    // Each refresh names the version it replaces (compare-and-set).
    for (let index = 1; index < refreshes.length; index++) expect(refreshes[index]!.input.expectedVersion).toBe((refreshes[index - 1]!.input.expectedVersion as number) + 1);
    expect((await handle.describe()).runId).not.toBe(firstRunId);
    const state = await handle.query(voiceDeviceStatusQuery);
    expect(state).toMatchObject({ status: 'linked', reportsSent: 1 });
    expect(state.lwa!.refreshCount).toBe(refreshes.length);

    await handle.signal(reportStateSignal, { reason: 'reservation_changed' });
    await until(() => calls.filter((call) => call.name === 'report').length === 2);
    expect(calls.filter((call) => call.name === 'report')[1]!.input).toMatchObject({ discovery: false });
    await handle.signal(unlinkSignal, { direction: 'user', requestedBy: { type: 'user', id: 'u-1' } });
    expect(await handle.result()).toEqual({ status: 'unlinked', direction: 'user' });
  });

  it('answers a refused AcceptGrant and one that ran out of time, dropping the code; refuses AcceptGrant for Google devices', async () => {
    const handle = await start('alexa');
    script.exchange = () => ({ accepted: false, reason: 'invalid_grant' });
    expect(await handle.executeUpdate(acceptGrantUpdate)).toEqual({ accepted: false, reason: 'invalid_grant' });
    script.exchange = () => ApplicationFailure.nonRetryable('LWA down', FailureType.providerRejected);
    expect(await handle.executeUpdate(acceptGrantUpdate)).toEqual({ accepted: false, reason: FailureType.providerRejected });
    expect(names().filter((name) => name === 'discardCode')).toHaveLength(1);
    expect(names()).not.toContain('report');
    await handle.signal(unlinkSignal, { direction: 'alexa_skill_disabled', requestedBy: { type: 'platform' } });
    await handle.result();

    const google = await start('google');
    expect(names()).toContain('requestSync');
    await expect(google.executeUpdate(acceptGrantUpdate)).rejects.toThrow();
    await google.signal(unlinkSignal, { direction: 'google_disconnect', requestedBy: { type: 'platform' } });
    await google.result();
  });

  it('sends a change report requested while the AcceptGrant discovery waits after the discovery, rather than folding it in', async () => {
    const handle = await linkedAlexa();
    const reports = () => calls.filter((call) => call.name === 'report');
    script.reportHeld = new Promise((resolve) => (script.releaseReports = resolve));
    await handle.signal(reportStateSignal, { reason: 'reservation_changed' });
    await until(() => reports().length === 2);
    // While that report is under way: another change, then a new permission, then a change while its discovery waits.
    await handle.signal(reportStateSignal, { reason: 'reservation_changed' });
    expect(await handle.executeUpdate(acceptGrantUpdate)).toMatchObject({ accepted: true });
    await handle.signal(reportStateSignal, { reason: 'guest_checked_in' });
    script.reportHeld = undefined;
    script.releaseReports!();

    // A report is recorded as it starts and counted as sent when it ends.
    await untilState(handle, (state) => state.reportsSent === 4);
    expect(reports().map((call) => call.input.discovery)).toEqual([true, false, true, false]);
    expect((await handle.query(voiceDeviceStatusQuery)).reportRequested).toBeUndefined();
    await handle.signal(unlinkSignal, { direction: 'user', requestedBy: { type: 'user' } });
    await handle.result();
    expect(reports()).toHaveLength(4);
  });

  it('unlinks when Login with Amazon says invalid_grant, without retrying', async () => {
    const handle = await linkedAlexa();
    script.refreshFailure = () => ApplicationFailure.nonRetryable('invalid_grant', FailureType.grantRevoked);
    await temporal.sleep(2 * HOUR);
    expect(await handle.result()).toEqual({ status: 'unlinked', direction: 'platform_permission_revoked' });
    expect(names().filter((name) => name === 'refresh')).toHaveLength(1);
    expect(calls.find((call) => call.name === 'revoke')!.input).toMatchObject({ direction: 'platform_permission_revoked', requestedBy: { type: 'platform' } });
  });

  it('unlinks when the event gateway says the permission is gone, or Home Graph no longer knows the user', async () => {
    const alexa = await linkedAlexa();
    script.reportFailure = () => ApplicationFailure.nonRetryable('403', FailureType.platformPermissionRevoked);
    await alexa.signal(reportStateSignal, { reason: 'test' });
    expect(await alexa.result()).toMatchObject({ direction: 'platform_permission_revoked' });

    script.reportFailure = () => ApplicationFailure.nonRetryable('404', FailureType.agentUserGone);
    script.revokeStatus = 'unlinking';
    const google = await start('google');
    await google.signal(reportStateSignal, { reason: 'test' });
    expect(await google.result()).toEqual({ status: 'unlinked', direction: 'google_disconnect', agentUser: 'deleted' });
    expect(names().slice(-2)).toEqual(['revoke', 'deleteAgentUser']);
  });

  it('keeps the link while the platform uses it, and unlinks it as unused once no refresh token outlives its expiry', async () => {
    let expiresAt = (await temporal.currentTimeMs()) + 10 * DAY;
    script.link = () => ({ status: 'linked', linkExpiresAt: expiresAt, unlinkReason: null });
    const handle = await start('google');
    // The platform refreshed meanwhile: the link now ends 20 days later.
    expiresAt += 20 * DAY;
    await temporal.sleep(11 * DAY);
    expect(names().filter((name) => name === 'readLink')).toHaveLength(2);
    expect((await handle.query(voiceDeviceStatusQuery)).linkExpiresAt).toBe(expiresAt);

    script.link = () => ({ status: 'linked', linkExpiresAt: null, unlinkReason: null });
    script.revokeStatus = 'unlinking';
    await temporal.sleep(20 * DAY);
    expect(await handle.result()).toEqual({ status: 'unlinked', direction: 'unused', agentUser: 'deleted' });
    expect(calls.find((call) => call.name === 'revoke')!.input).toMatchObject({ direction: 'unused', requestedBy: { type: 'system' } });
  });

  it('does not wait for a retrying LWA refresh to unlink', async () => {
    const handle = await linkedAlexa();
    script.refreshFailure = () => ApplicationFailure.retryable('LWA 503', FailureType.providerUnavailable);
    await temporal.sleep(HOUR);
    const attempts = names().filter((name) => name === 'refresh').length;
    expect(attempts).toBeGreaterThan(1);
    await handle.signal(unlinkSignal, { direction: 'operator', requestedBy: { type: 'operator', id: 'ops' } });
    expect(await handle.result()).toEqual({ status: 'unlinked', direction: 'operator' });
  });

  it("does not wait for Home Graph's first requestSync, retrying, to unlink", async () => {
    script.syncFailure = () => ApplicationFailure.create({ message: 'Home Graph 503', type: FailureType.providerUnavailable, nextRetryDelay: '10 minutes' });
    script.revokeStatus = 'unlinking';
    const handle = await start('google', undefined, { awaitLinkRead: false });
    await until(() => names().includes('requestSync'));
    await handle.signal(unlinkSignal, { direction: 'google_disconnect', requestedBy: { type: 'platform' } });
    expect(await handle.result()).toEqual({ status: 'unlinked', direction: 'google_disconnect', agentUser: 'deleted' });
    // Its retries (up to an hour) were not waited for: our tokens were revoked at once.
    expect(names().filter((name) => name === 'requestSync')).toHaveLength(1);
    expect(names().slice(-2)).toEqual(['revoke', 'deleteAgentUser']);
  });

  it('a run started only to unlink asks Google for nothing, and a device found unlinked ends quietly', async () => {
    const deviceId = randomUUID();
    const handle = await temporal.client.workflow.signalWithStart<typeof voiceDeviceWorkflow, [UnlinkSignal]>('voiceDeviceWorkflow', {
      workflowId: voiceDeviceWorkflowId('google', deviceId),
      taskQueue: worker.taskQueue,
      args: [{ deviceId, platform: 'google', refreshPolicy: { marginSeconds: MARGIN_SECONDS, jitterSeconds: 0 } }],
      signal: unlinkSignal,
      signalArgs: [{ direction: 'user', requestedBy: { type: 'user' } }],
    });
    script.revokeStatus = 'unlinking';
    expect(await handle.result()).toMatchObject({ status: 'unlinked', direction: 'user' });
    expect(calls.filter((call) => call.input.deviceId === deviceId).map((call) => call.name)).toEqual(['revoke', 'deleteAgentUser']);

    calls = [];
    script.link = () => ({ status: 'unlinked', linkExpiresAt: null, unlinkReason: 'grant_revoked' });
    const gone = await start('alexa');
    expect(await gone.result()).toEqual({ status: 'unlinked' });
    expect(names()).toEqual(['readLink']);
  });

  it('finishes an unlink a crashed run left half done', async () => {
    script.link = () => ({ status: 'unlinking', linkExpiresAt: null, unlinkReason: 'google_disconnect' });
    script.revokeStatus = 'unlinking';
    const handle = await start('google');
    expect(await handle.result()).toEqual({ status: 'unlinked', direction: 'google_disconnect', agentUser: 'deleted' });
  });
});
