import { sql } from 'slonik';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import type { History } from '@temporalio/common/lib/proto-utils';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import type { connectionWorkflow } from '../../workflows/connection';
import { startFakeBooking, type FakeBooking } from '../../fakes/booking';
import {
  freshTokenUpdate,
  invalidatedSignal,
  providerEventSignal,
  refreshNowUpdate,
  statusQuery,
  syncRequestSignal,
  type ConnectionState,
} from '../../workflows/connection-messages';
import { BOOKING_TEST_ACCOUNT, bookingEnvironment, connectBooking } from '../helpers/booking';
import type { housekeepingWorkflow } from '../../workflows/housekeeping';
import { recordedHistory, writeCheckedHistories } from './recording';
import { connectGoogleCalendar, GOOGLE_TEST_CLIENT, startTestPlatform, TEST_PASSWORD, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { voiceDeviceWorkflowStart } from '../../api/voice-device-workflow';
import { voiceDeviceColumn } from '../../db/encrypted-columns';
import { storeLwaGrantCode } from '../../db/queries/voice-devices';
import { acceptGrantUpdate, reportStateSignal, unlinkSignal, type UnlinkDirection } from '../../workflows/voice-device-messages';
import { LWA_CLIENT, seedStay, startVoiceTestPlatform, type VoiceTestPlatform } from '../helpers/voice';
import { dayOf, grantAlexaPermission, linkDevice, outcomeOf, waitForDeviceState, type LinkedDevice } from '../helpers/voice-devices';

/**
 * Records the histories that test/replay/replay.test.ts replays: every workflow type, along the paths
 * that matter, driven through the real platform (api-server over HTTP, worker, Postgres, fake Google)
 * on the time-skipping server. Not a test (the name does not match `*.test.ts`): run it with
 * `npm run record-histories`, which writes test/replay/histories/<scenario>.json (other files there are
 * left alone: older histories that live runs may still follow stay replayed until they are deleted).
 *
 * The histories are committed, so every one is checked for every secret the run handled (tokens and
 * codes the fake issued, verifiers, states, session tokens, the client secret, the encryption key).
 */

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

type ConnectionHandle = WorkflowHandle<typeof connectionWorkflow>;

describe('record replay histories (time-skipping)', { timeout: 10 * 60 * 1000 }, () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let booking: FakeBooking;
  let platform: TestPlatform;
  let clock: SimulatedClock;
  const recorded = new Map<string, History>();
  const linkedDevices: LinkedDevice[] = [];
  const secrets = new Set<string>([TEST_PASSWORD, BOOKING_TEST_ACCOUNT.clientSecret]);

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    clock = await SimulatedClock.of(temporal);
    google = await startFakeGoogle({ ...GOOGLE_TEST_CLIENT, clock: clock.now });
    booking = await startFakeBooking({ ...BOOKING_TEST_ACCOUNT, clock: clock.now });
    const environment = {
      // Short-lived push channels, so that a few simulated hours show a channel being replaced.
      GOOGLE_CHANNEL_TTL_SECONDS: String(6 * 3600),
      ...bookingEnvironment(booking, { pollIntervalSeconds: 600, ackPauseMs: 0 }),
    };
    platform = await startTestPlatform({ temporal, google, clock: clock.activityClock, environment });
    for (const key of [platform.config.encryption.activeKey, platform.config.payloadEncryption.activeKey]) if (key) secrets.add(key);
  });

  afterAll(async () => {
    await platform?.close();
    await google?.close();
    await booking?.close();
    await temporal?.teardown();
  });

  async function signUp(name: string) {
    const { sessionToken } = await platform.signUp(`${name}-${randomUUID()}@example.com`);
    secrets.add(sessionToken);
    return sessionToken;
  }

  /** The browser's round trip; every secret it handled is remembered for the scan. */
  async function authorize(sessionToken: string) {
    await clock.catchUp();
    const connected = await connectGoogleCalendar(platform, sessionToken);
    const callback = new URL(connected.callbackUrl);
    for (const secret of [connected.codeVerifier, callback.searchParams.get('code'), callback.searchParams.get('state')]) {
      if (secret) secrets.add(secret);
    }
    expect(connected.status).toBe(202);
    const { workflowId } = connected.body as { workflowId: string };
    return platform.client.workflow.getHandle<typeof connectionWorkflow>(workflowId);
  }

  async function connect(name: string) {
    const sessionToken = await signUp(name);
    const handle = await authorize(sessionToken);
    await waitFor(handle, (state) => state.status === 'active');
    return { sessionToken, handle };
  }

  const waitFor = (handle: ConnectionHandle, predicate: (state: ConnectionState) => boolean) =>
    waitForConnectionState(platform, handle.workflowId, predicate);

  async function disconnect(sessionToken: string, handle: ConnectionHandle, provider = 'google-calendar', revocation = 'revoked') {
    const answer = await fetch(`${platform.apiUrl}/api/v1/integrations/${provider}/disconnect`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sessionToken}` },
    });
    expect(answer.status).toBe(202);
    expect(await handle.result()).toEqual({ status: 'disconnected', revocation });
  }

  const syncRuns = (handle: ConnectionHandle, runs: number) => waitFor(handle, (state) => (state.sync?.runCount ?? 0) >= runs);
  const newestChannel = () => google.liveChannels().at(-1)!;

  /** How many attempts of an activity type completed in the workflow's current run. */
  async function completedActivities(handle: ConnectionHandle, activityType: string): Promise<number> {
    const events = (await handle.fetchHistory()).events ?? [];
    const scheduled = new Set(events.filter((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === activityType).map((event) => String(event.eventId)));
    return events.filter((event) => scheduled.has(String(event.activityTaskCompletedEventAttributes?.scheduledEventId))).length;
  }

  async function until(predicate: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await predicate())) {
      if (Date.now() > deadline) throw new Error('timed out');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async function record(name: string, handle: WorkflowHandle, runId?: string): Promise<void> {
    recorded.set(name, await recordedHistory(handle, runId));
  }

  it('connectionWorkflow: connect, hourly refreshes, disconnect', async () => {
    const { sessionToken, handle } = await connect('refreshes');
    await clock.advance(3 * HOUR);
    expect((await handle.query(statusQuery)).refreshCount).toBeGreaterThanOrEqual(2);
    await disconnect(sessionToken, handle);
    await record('connection-connect-refresh-disconnect', handle);
  });

  it('connectionWorkflow: invalid_grant → needs_reauth, re-authorized, invalidated by the provider, disconnect', async () => {
    const { sessionToken, handle } = await connect('reauth');
    google.switches.invalidGrant = true;
    try {
      await clock.advance(HOUR);
      expect(await handle.query(statusQuery)).toMatchObject({ status: 'needs_reauth', lastError: { kind: 'invalid_grant' } });
    } finally {
      google.switches.invalidGrant = false;
    }
    await clock.advance(DAY); // nothing happens while it waits for the user
    const before = await handle.query(statusQuery);
    await authorize(sessionToken);
    await waitFor(handle, (state) => state.status === 'active' && state.tokenVersion > before.tokenVersion);
    await handle.signal(invalidatedSignal, { reason: 'sessions-revoked' });
    await waitFor(handle, (state) => state.status === 'needs_reauth');
    await disconnect(sessionToken, handle);
    await record('connection-needs-reauth', handle);
  });

  it('connectionWorkflow: a run that continues as new, and the run after it', async () => {
    const { sessionToken, handle } = await connect('long-lived');
    const firstRunId = (await handle.describe()).runId;
    for (let day = 0; day < 8 && (await handle.describe()).runId === firstRunId; day++) await clock.advance(DAY);
    const secondRunId = (await handle.describe()).runId;
    expect(secondRunId).not.toBe(firstRunId);
    await record('connection-continue-as-new', handle, firstRunId);

    await clock.advance(2 * HOUR); // a refresh or two in the continued run
    await handle.executeUpdate(freshTokenUpdate, { args: [{ minValiditySeconds: 60 }] });
    await disconnect(sessionToken, handle);
    expect((await handle.describe()).runId).toBe(secondRunId);
    await record('connection-continued-run', handle, secondRunId);
  });

  it('connectionWorkflow: freshToken updates, with and without a refresh', async () => {
    const { sessionToken, handle } = await connect('fresh-token');
    const first = await handle.executeUpdate(freshTokenUpdate, { args: [{ minValiditySeconds: 120 }] });
    await clock.advance(30 * MINUTE);
    // Less than 50 minutes of validity left: the update refreshes first.
    const second = await handle.executeUpdate(freshTokenUpdate, { args: [{ minValiditySeconds: 50 * 60 }] });
    expect(second.tokenVersion).toBe(first.tokenVersion + 1);
    await expect(handle.executeUpdate(freshTokenUpdate, { args: [{ minValiditySeconds: -1 }] })).rejects.toThrow(); // refused by the validator
    await disconnect(sessionToken, handle);
    await record('connection-fresh-token', handle);
  });

  it('connectionWorkflow: re-authorization of an active connection', async () => {
    const { sessionToken, handle } = await connect('reauthorize-active');
    const before = await handle.query(statusQuery);
    await authorize(sessionToken);
    await waitFor(handle, (state) => state.tokenVersion > before.tokenVersion && state.status === 'active');
    await disconnect(sessionToken, handle);
    await record('connection-reauthorize-active', handle);
  });

  it('connectionWorkflow: a first authorization that fails', async () => {
    const sessionToken = await signUp('failed');
    await clock.catchUp();
    const auth = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/auth`, {
      headers: { authorization: `Bearer ${sessionToken}` },
      redirect: 'manual',
    });
    const consent = await fetch(auth.headers.get('location')!, { redirect: 'manual' });
    const callbackUrl = new URL(consent.headers.get('location')!);
    secrets.add(callbackUrl.searchParams.get('code')!).add(callbackUrl.searchParams.get('state')!);
    // A code Google never issued (or one already redeemed): the exchange gets invalid_grant.
    callbackUrl.searchParams.set('code', `4/0A-not-issued-${randomUUID()}`);
    secrets.add(callbackUrl.searchParams.get('code')!);
    const callback = await fetch(callbackUrl, { headers: { authorization: `Bearer ${sessionToken}` } });
    expect(callback.status).toBe(202);
    const { workflowId } = (await callback.json()) as { workflowId: string };
    const handle = platform.client.workflow.getHandle<typeof connectionWorkflow>(workflowId);
    expect(await handle.result()).toEqual({ status: 'failed' });
    await record('connection-failed-authorization', handle);
  });

  it('connectionWorkflow: disconnect of a connection whose workflow was terminated (a run that only disconnects)', async () => {
    const { sessionToken, handle } = await connect('terminated');
    await handle.terminate('recording: operator mistake');
    await disconnect(sessionToken, handle);
    await record('connection-disconnect-only', handle);
  });

  it('connectionWorkflow: webhooks, a renewal the provider asks for, a full sync on request, a forced refresh, channel replacement, disconnect', async () => {
    const { sessionToken, handle } = await connect('provider-work');
    await syncRuns(handle, 1);
    await google.notify(newestChannel().id);
    await syncRuns(handle, 2);
    await handle.signal(providerEventSignal, { kind: 'reauthorization_required' });
    await until(async () => (await completedActivities(handle, 'renewConnectionSubscriptions')) >= 1);
    await handle.signal(syncRequestSignal, { reason: 'operator', full: true });
    await syncRuns(handle, 3);
    await handle.executeUpdate(refreshNowUpdate);
    const replaced = newestChannel().id;
    await clock.advance(7 * HOUR);
    expect(newestChannel().id).not.toBe(replaced);
    await disconnect(sessionToken, handle);
    await record('connection-provider-work', handle);
  });

  it('connectionWorkflow: a machine account (Booking.com): credentials stored, first token, polls, disconnect', async () => {
    const sessionToken = await signUp('machine-account');
    await clock.catchUp();
    const connected = await connectBooking(platform, sessionToken);
    expect(connected.status).toBe(202);
    const handle = platform.client.workflow.getHandle<typeof connectionWorkflow>(connected.body.workflowId!);
    await syncRuns(handle, 1);
    booking.queueReservation({ hotelId: 'H-1', guest: { givenName: 'Ada', surname: 'Lovelace' }, checkIn: '2031-05-01', checkOut: '2031-05-04' });
    await clock.advance(20 * MINUTE);
    await waitFor(handle, (state) => (state.sync?.lastCounts?.created ?? 0) > 0 || (state.sync?.runCount ?? 0) >= 3);
    await disconnect(sessionToken, handle, 'booking-com', 'not_supported');
    await record('connection-machine-account', handle);
  });

  it('housekeepingWorkflow: one run', async () => {
    const workflowId = `housekeeping-record-${randomUUID()}`;
    await platform.client.workflow.execute<typeof housekeepingWorkflow>('housekeepingWorkflow', {
      workflowId,
      taskQueue: platform.config.temporal.taskQueue,
    });
    await record('housekeeping', platform.client.workflow.getHandle(workflowId));
  });

  /**
   * The voice-device workflow on a time-skipping server of its own: its scenarios move simulated time
   * by days, and waiting for their outcomes never lets the server skip ahead.
   */
  describe('voiceDeviceWorkflow', () => {
    let voiceTemporal: TestWorkflowEnvironment;
    let clock: SimulatedClock;
    /** Alexa and Google Home with their fakes; device refresh tokens live a week, so an unused link ends within the recording. */
    let voice: VoiceTestPlatform;

    beforeAll(async () => {
      voiceTemporal = await startTimeSkippingServer();
      clock = await SimulatedClock.of(voiceTemporal);
      voice = await startVoiceTestPlatform(voiceTemporal, { DEVICE_REFRESH_TOKEN_TTL_SECONDS: String(7 * 24 * 3600) }, { clock });
      const { config } = voice.platform;
      for (const key of [config.encryption.activeKey, config.payloadEncryption.activeKey, LWA_CLIENT.clientSecret]) if (key) secrets.add(key);
      secrets.add((JSON.parse(config.voice.google.serviceAccountKey!) as { private_key: string }).private_key.split('\n')[1]!);
    });

    afterAll(async () => {
      for (const secret of [...(voice?.amazon.issuedSecrets() ?? []), ...(voice?.googleHome.issuedSecrets() ?? []), ...linkedDevices.flatMap((device) => device.secrets)]) secrets.add(secret);
      await voice?.close();
      await voiceTemporal?.teardown();
    });

    async function linkVoice(platformName: 'alexa' | 'google'): Promise<LinkedDevice> {
      await clock.catchUp();
      const device = await linkDevice(voice, platformName === 'alexa' ? voice.alexaClient : voice.googleClient);
      await seedStay(voice.platform, device.userId, { property: 'Harbour loft', guest: null, checkIn: dayOf(clock.now(), -1), checkOut: dayOf(clock.now(), 3) });
      linkedDevices.push(device);
      return device;
    }

    async function linkAlexaWithPermission() {
      const device = await linkVoice('alexa');
      const { customerId, result } = await grantAlexaPermission(voice, device);
      expect(result).toMatchObject({ accepted: true });
      await waitForDeviceState(device, (state) => state.reportsSent === 1);
      return { device, customerId };
    }

    async function unlinkVoice(device: LinkedDevice, direction: UnlinkDirection, requestedBy: { type: 'user' | 'operator' | 'system' | 'platform'; id?: string }) {
      await device.handle.signal(unlinkSignal, { direction, requestedBy });
      expect(await outcomeOf(voice, device.handle)).toMatchObject({ status: 'unlinked', direction });
    }


    it('Alexa link, a refused and an accepted AcceptGrant, hourly LWA refreshes, reports (one after a gateway 401), unlink by the user', async () => {
      const device = await linkVoice('alexa');
      const { db, crypto } = voice.platform;
      await storeLwaGrantCode(db, device.deviceId, crypto.encrypt('ANa-never-issued', voiceDeviceColumn(device.deviceId, 'lwa_grant_code_enc')));
      expect(await device.handle.executeUpdate(acceptGrantUpdate)).toEqual({ accepted: false, reason: 'invalid_grant' });
      expect((await grantAlexaPermission(voice, device)).result).toMatchObject({ accepted: true });
      await waitForDeviceState(device, (state) => state.reportsSent === 1);
      await clock.advance(3 * HOUR);
      expect((await waitForDeviceState(device, () => true)).lwa!.refreshCount).toBeGreaterThanOrEqual(2);
      await db.query(sql.unsafe`
        UPDATE voice_devices SET lwa_access_token_enc = ${crypto.encrypt('Atza|ended-early', voiceDeviceColumn(device.deviceId, 'lwa_access_token_enc'))} WHERE id = ${device.deviceId}`);
      await device.handle.signal(reportStateSignal, { reason: 'reservation_changed' });
      await waitForDeviceState(device, (state) => state.reportsSent === 2);
      await unlinkVoice(device, 'user', { type: 'user', id: device.userId });
      await record('voice-device-alexa-lifecycle', device.handle);
    });

    it('a run that continues as new, and the run after it', async () => {
      const { device } = await linkAlexaWithPermission();
      const firstRunId = (await device.handle.describe()).runId;
      for (let day = 0; day < 8 && (await device.handle.describe()).runId === firstRunId; day++) await clock.advance(DAY);
      const secondRunId = (await device.handle.describe()).runId;
      expect(secondRunId).not.toBe(firstRunId);
      await record('voice-device-continue-as-new', device.handle, firstRunId);
      await clock.advance(2 * HOUR);
      await unlinkVoice(device, 'alexa_skill_disabled', { type: 'platform' });
      expect((await device.handle.describe()).runId).toBe(secondRunId);
      await record('voice-device-continued-run', device.handle, secondRunId);
    });

    it('Login with Amazon answers invalid_grant: the permission is gone', async () => {
      const { device, customerId } = await linkAlexaWithPermission();
      voice.amazon.revokeCustomer(customerId);
      await clock.advance(HOUR);
      expect(await outcomeOf(voice, device.handle)).toMatchObject({ direction: 'platform_permission_revoked' });
      await record('voice-device-lwa-permission-revoked', device.handle);
    });

    it('the event gateway answers 403: the skill was disabled', async () => {
      const { device, customerId } = await linkAlexaWithPermission();
      voice.amazon.customer(customerId)!.skillDisabled = true;
      await device.handle.signal(reportStateSignal, { reason: 'reservation_changed' });
      expect(await outcomeOf(voice, device.handle)).toMatchObject({ direction: 'platform_permission_revoked' });
      await record('voice-device-gateway-permission-revoked', device.handle);
    });

    it('Google link, SYNC, a state report, DISCONNECT (Home Graph forgets the agent user)', async () => {
      const device = await linkVoice('google');
      voice.googleHome.linkAgentUser(device.deviceId);
      await device.handle.signal(reportStateSignal, { reason: 'reservation_changed' });
      await waitForDeviceState(device, (state) => state.reportsSent === 1);
      await unlinkVoice(device, 'google_disconnect', { type: 'platform' });
      expect(voice.googleHome.deletes(device.deviceId)).toBe(1);
      await record('voice-device-google-disconnect', device.handle);
    });

    it('Home Graph no longer knows the agent user', async () => {
      const device = await linkVoice('google');
      await device.handle.signal(reportStateSignal, { reason: 'reservation_changed' });
      expect(await outcomeOf(voice, device.handle)).toMatchObject({ direction: 'google_disconnect', agentUser: 'not_found' });
      await record('voice-device-google-agent-user-gone', device.handle);
    });

    for (const [direction, requestedBy] of [
      ['grant_revoked', { type: 'user' }],
      ['operator', { type: 'operator', id: 'ops' }],
      ['client_revoked', { type: 'operator', id: 'ops' }],
    ] as const) {
      it(`unlink (${direction})`, async () => {
        const device = await linkVoice('alexa');
        await unlinkVoice(device, direction, requestedBy);
        await record(`voice-device-unlink-${direction.replace('_', '-')}`, device.handle);
      });
    }

    it('an unlink of a device whose link had already ended (a run that only unlinks)', async () => {
      const device = await linkVoice('google');
      await unlinkVoice(device, 'user', { type: 'user' });
      const again = await voice.platform.client.workflow.signalWithStart('voiceDeviceWorkflow', {
        ...voiceDeviceWorkflowStart(voice.platform.config, { id: device.deviceId, platform: 'google' }),
        signal: unlinkSignal,
        signalArgs: [{ direction: 'operator', requestedBy: { type: 'operator' } }],
      });
      expect(await outcomeOf(voice, again)).toEqual({ status: 'unlinked', direction: 'operator' });
      await record('voice-device-unlink-only', again);
    });

    it('a link left unused past its lifetime', async () => {
      const device = await linkVoice('alexa');
      await clock.advance(8 * DAY);
      expect(await outcomeOf(voice, device.handle)).toEqual({ status: 'unlinked', direction: 'unused' });
      await record('voice-device-unused', device.handle);
    });
  });

  it('holds no secret and no encoded payload, and writes the histories', async () => {
    expect(recorded.size).toBe(23);
    for (const secret of [...google.issuedSecrets(), ...booking.issuedSecrets()]) secrets.add(secret);
    expect(secrets.size).toBeGreaterThan(20);
    await writeCheckedHistories(recorded, secrets);
  });
});
