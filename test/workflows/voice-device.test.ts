import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { CommonQueryMethods } from 'slonik';
import { DefaultLogger, type ActivityExecuteInput, type ActivityInboundCallsInterceptor, type Next } from '@temporalio/worker';
import { createActivities, type Activities } from '../../activities';
import { voiceDeviceWorkflowStart } from '../../api/voice-device-workflow';
import { voiceDeviceColumn } from '../../db/encrypted-columns';
import { storeLwaGrantCode } from '../../db/queries/voice-devices';
import { AuditLog, type AuditEntry } from '../../platform/audit';
import type { LoginWithAmazon } from '../../platform/voice/voice-platform';
import { acceptGrantUpdate, reportStateSignal, unlinkSignal } from '../../workflows/voice-device-messages';
import { historyPayloadTexts } from '../helpers/history';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';
import { LWA_CLIENT, seedStay, startVoiceTestPlatform, type VoiceTestPlatform } from '../helpers/voice';
import { activeTokens, dayOf, grantAlexaPermission, linkDevice, outcomeOf, refreshAsPlatform, waitForDeviceState, type LinkedDevice } from '../helpers/voice-devices';

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;

const deviceColumns = z.object({
  grantCode: z.string().nullable(),
  accessToken: z.string().nullable(),
  refreshToken: z.string().nullable(),
  version: z.number(),
  status: z.string(),
  unlinkReason: z.string().nullable(),
  agentUserDeletedAt: z.number().nullable(),
});

/**
 * The voice-device workflow with its real activities: the api-server over HTTP (our token endpoint on
 * the simulated clock), the worker, Postgres, the fake Amazon (Login with Amazon, event gateways) and
 * the fake Home Graph, on the time-skipping server. Each case unlinks its device at the end, so no
 * other device's calls run through the fakes while the next case counts them.
 */
describe('voice-device workflow (time-skipping, real activities)', { timeout: 120_000 }, () => {
  let temporal: TestWorkflowEnvironment;
  let clock: SimulatedClock;
  let voice: VoiceTestPlatform;
  const linked: LinkedDevice[] = [];
  /** Activity types whose next completed attempt loses its answer (the worker died before reporting it). */
  const loseNextAnswer = new Set<string>();

  class LosesAnswers implements ActivityInboundCallsInterceptor {
    async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
      const result = await next(input);
      const { activityType } = Context.current().info;
      if (loseNextAnswer.delete(activityType)) throw ApplicationFailure.retryable(`the answer of ${activityType} was lost`, 'LostAnswer');
      return result;
    }
  }

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    clock = await SimulatedClock.of(temporal);
    voice = await startVoiceTestPlatform(temporal, {}, { clock, activityInterceptors: [() => ({ inbound: new LosesAnswers() })] });
  });

  afterAll(async () => {
    await voice?.close();
    await temporal?.teardown();
  });

  async function link(platform: 'alexa' | 'google' = 'alexa'): Promise<LinkedDevice> {
    await clock.catchUp();
    const device = await linkDevice(voice, platform === 'alexa' ? voice.alexaClient : voice.googleClient);
    linked.push(device);
    return device;
  }

  /** A property of the device's user, occupied today or vacant (its one stay is next month). */
  async function addProperty(device: LinkedDevice, name: string, occupied: boolean): Promise<string> {
    const checkIn = dayOf(clock.now(), occupied ? -1 : 30);
    return seedStay(voice.platform, device.userId, { property: name, guest: null, checkIn, checkOut: dayOf(clock.now(), occupied ? 2 : 33) });
  }

  /** A linked Alexa device with one property, whose user has granted the skill the permission to send events. */
  async function linkWithPermission() {
    const device = await link();
    await addProperty(device, 'Home', true);
    const granted = await grantAlexaPermission(voice, device);
    expect(granted.result).toMatchObject({ accepted: true });
    await waitForDeviceState(device, (state) => state.reportsSent === 1);
    return { device, customerId: granted.customerId };
  }

  async function unlinkByOperator(device: LinkedDevice) {
    await device.handle.signal(unlinkSignal, { direction: 'operator', requestedBy: { type: 'operator', id: 'ops' } });
    expect(await outcomeOf(voice, device.handle)).toMatchObject({ status: 'unlinked', direction: 'operator' });
  }

  const readDevice = (deviceId: string) =>
    voice.platform.db.one(sql.type(deviceColumns)`
      SELECT lwa_grant_code_enc AS "grantCode", lwa_access_token_enc AS "accessToken", lwa_refresh_token_enc AS "refreshToken",
             lwa_token_version AS version, status, unlink_reason AS "unlinkReason", agent_user_deleted_at AS "agentUserDeletedAt"
      FROM voice_devices WHERE id = ${deviceId}`);

  const auditRows = (deviceId: string, action: string) =>
    voice.platform.db.any(sql.type(z.object({ outcome: z.string(), actorType: z.string(), details: z.record(z.unknown()) }))`
      SELECT outcome, actor_type AS "actorType", details FROM audit_log WHERE action = ${action} AND details->>'deviceId' = ${deviceId} ORDER BY id`);

  const runActivity = <P extends unknown[], R>(fn: (...args: P) => Promise<R>, ...args: P): Promise<R> =>
    new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR') }).run(fn, ...args) as Promise<R>;

  function activitiesWith(overrides: Partial<Parameters<typeof createActivities>[0]> = {}): Activities {
    return createActivities({ ...voice.platform, clock: () => new Date(clock.now()), ...overrides });
  }

  /** Every token of ours the device held is inactive, its grant's refresh tokens are revoked, the platform's credentials are gone. */
  async function expectEverythingRevoked(device: LinkedDevice) {
    expect(await activeTokens(voice, device)).toEqual([]);
    const live = await voice.platform.db.oneFirst(sql.type(z.object({ count: z.number() }))`
      SELECT count(*)::int AS count FROM oauth_refresh_tokens t JOIN voice_devices d ON d.grant_id = t.grant_id
      WHERE d.id = ${device.deviceId} AND t.revoked_at IS NULL`);
    expect(live).toBe(0);
    expect(await refreshAsPlatform(voice, device)).toEqual({ status: 400, error: 'invalid_grant' });
    expect(await readDevice(device.deviceId)).toMatchObject({ grantCode: null, accessToken: null, refreshToken: null, status: 'unlinked' });
  }

  it('exchanges an AcceptGrant at once, stores the LWA tokens encrypted, and tells Alexa about the properties', async () => {
    const device = await link();
    const occupied = await addProperty(device, 'Seaside flat', true);
    const vacant = await addProperty(device, 'Mountain hut', false);

    const { customerId, result } = await grantAlexaPermission(voice, device);
    expect(result).toEqual({ accepted: true, accessTokenExpiresAt: expect.any(Number) });
    const stored = await readDevice(device.deviceId);
    expect(stored).toMatchObject({ grantCode: null, version: 1, status: 'linked' });
    const accessToken = voice.platform.crypto.decrypt(stored.accessToken!, voiceDeviceColumn(device.deviceId, 'lwa_access_token_enc'));
    expect(accessToken).toMatch(/^Atza\|/);
    expect(stored.accessToken).not.toContain(accessToken);
    expect(await auditRows(device.deviceId, 'VoiceAcceptGrant')).toEqual([expect.objectContaining({ outcome: 'success' })]);

    // Discovery first: each property an endpoint; then, on request, a ChangeReport per property with today's occupancy.
    await waitForDeviceState(device, (state) => state.reportsSent === 1);
    type Event = { header: { name: string }; endpoint?: { endpointId: string }; payload: Record<string, unknown> };
    const eventsOf = () => voice.amazon.events(customerId).map((received) => (received.event as { event: Event }).event);
    const [discovery] = eventsOf();
    expect(discovery!.header.name).toBe('AddOrUpdateReport');
    expect((discovery!.payload.endpoints as { endpointId: string; friendlyName: string }[]).map((endpoint) => [endpoint.endpointId, endpoint.friendlyName])).toEqual([
      [occupied, 'Seaside flat'],
      [vacant, 'Mountain hut'],
    ]);
    await device.handle.signal(reportStateSignal, { reason: 'reservation_changed' });
    await waitForDeviceState(device, (state) => state.reportsSent === 2);
    const changes = eventsOf().slice(1);
    expect(changes.map((change) => [change.header.name, change.endpoint!.endpointId, (change.payload.change as { properties: { value: string }[] }).properties[0]!.value])).toEqual([
      ['ChangeReport', occupied, 'Occupancy.Occupied'],
      ['ChangeReport', vacant, 'Occupancy.Unoccupied'],
    ]);
    await unlinkByOperator(device);
  });

  it('answers a refused AcceptGrant (a code LWA does not know, or no LWA configuration) and drops the code', async () => {
    const device = await link();
    const { db, crypto } = voice.platform;
    await storeLwaGrantCode(db, device.deviceId, crypto.encrypt('ANa-never-issued', voiceDeviceColumn(device.deviceId, 'lwa_grant_code_enc')));
    expect(await device.handle.executeUpdate(acceptGrantUpdate)).toEqual({ accepted: false, reason: 'invalid_grant' });
    expect(await readDevice(device.deviceId)).toMatchObject({ grantCode: null, accessToken: null, version: 0, status: 'linked' });
    expect(await auditRows(device.deviceId, 'VoiceAcceptGrant')).toEqual([
      expect.objectContaining({ outcome: 'failure', details: expect.objectContaining({ reason: 'invalid_grant' }) }),
    ]);

    // A worker without LWA credentials refuses at once rather than letting the code expire.
    const { code } = voice.amazon.issueGrantCode();
    await storeLwaGrantCode(db, device.deviceId, crypto.encrypt(code, voiceDeviceColumn(device.deviceId, 'lwa_grant_code_enc')));
    const unconfigured = activitiesWith({ voice: { ...voice.platform.voice, loginWithAmazon: undefined } });
    expect(await runActivity(unconfigured.exchangeAlexaGrant, { deviceId: device.deviceId, knownVersion: 0 })).toEqual({ accepted: false, reason: 'lwa_not_configured' });
    expect(await readDevice(device.deviceId)).toMatchObject({ grantCode: null });
    expect(await waitForDeviceState(device, () => true)).toMatchObject({ status: 'linked' });
    await unlinkByOperator(device);
  });

  it('refreshes LWA tokens before they expire; refreshes are compare-and-set on the token version', async () => {
    const { device } = await linkWithPermission();
    const before = (await waitForDeviceState(device, () => true)).lwa!;
    await clock.advance(HOUR);
    const after = (await waitForDeviceState(device, (state) => state.lwa!.refreshCount === 1)).lwa!;
    expect(after.tokenVersion).toBe(before.tokenVersion + 1);
    expect(after.accessTokenExpiresAt).toBeGreaterThan(before.accessTokenExpiresAt);
    expect(await auditRows(device.deviceId, 'OAuthTokenRefresh')).toHaveLength(1);

    // Two refreshes of one version race: one writes, the other adopts what it wrote.
    const activities = activitiesWith();
    const version = after.tokenVersion;
    const [first, second] = await Promise.all([
      runActivity(activities.refreshAlexaTokens, { deviceId: device.deviceId, expectedVersion: version }),
      runActivity(activities.refreshAlexaTokens, { deviceId: device.deviceId, expectedVersion: version }),
    ]);
    expect(first).toEqual(second);
    expect(first.tokenVersion).toBe(version + 1);
    expect((await readDevice(device.deviceId)).version).toBe(version + 1);
    expect(await auditRows(device.deviceId, 'OAuthTokenRefresh')).toHaveLength(2);
    // A refresh of a version that moved on asks LWA nothing and reports what is stored.
    const lwaCalls = voice.amazon.refreshes();
    expect(await runActivity(activities.refreshAlexaTokens, { deviceId: device.deviceId, expectedVersion: version })).toEqual(first);
    expect(voice.amazon.refreshes()).toBe(lwaCalls);

    // The workflow, still at the old version, adopts the stored tokens and goes on refreshing.
    await clock.advance(2 * HOUR);
    const later = await waitForDeviceState(device, (state) => state.lwa!.tokenVersion > version + 1);
    expect(later.status).toBe('linked');
    expect(later.lwa!.accessTokenExpiresAt).toBeGreaterThan(clock.now());
    await unlinkByOperator(device);
  });

  it('a refresh that presented the old refresh token while an AcceptGrant replaced it adopts the new tokens rather than unlinking', async () => {
    const { device, customerId } = await linkWithPermission();
    const { version } = await readDevice(device.deviceId);
    const amazon = voice.platform.voice.loginWithAmazon!;
    let presented!: () => void;
    const refreshPresented = new Promise<void>((resolve) => (presented = resolve));
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    const slowRefresh: LoginWithAmazon = {
      exchangeCode: (code, options) => amazon.exchangeCode(code, options),
      refresh: async (refreshToken, options) => {
        presented();
        await answered;
        return amazon.refresh(refreshToken, options);
      },
    };
    const refreshing = runActivity(activitiesWith({ voice: { ...voice.platform.voice, loginWithAmazon: slowRefresh } }).refreshAlexaTokens, {
      deviceId: device.deviceId,
      expectedVersion: version,
    });
    await refreshPresented;

    // The user granted the permission again meanwhile: Amazon ended the old grant, and the new code is exchanged and stored.
    voice.amazon.revokeCustomer(customerId);
    const { code } = voice.amazon.issueGrantCode({ customerId });
    device.secrets.push(code);
    await storeLwaGrantCode(voice.platform.db, device.deviceId, voice.platform.crypto.encrypt(code, voiceDeviceColumn(device.deviceId, 'lwa_grant_code_enc')));
    expect(await device.handle.executeUpdate(acceptGrantUpdate)).toMatchObject({ accepted: true });
    const regranted = await readDevice(device.deviceId);
    expect(regranted.version).toBe(version + 1);

    answer();
    expect(await refreshing).toEqual({ tokenVersion: version + 1, accessTokenExpiresAt: expect.any(Number) });
    expect(voice.amazon.calls.filter((call) => call.endpoint === 'token').at(-1)).toMatchObject({ grantType: 'refresh_token', error: 'invalid_grant' });
    expect(await readDevice(device.deviceId)).toEqual(regranted);
    expect(await waitForDeviceState(device, (state) => state.reportsSent === 2)).toMatchObject({ status: 'linked' });
    await unlinkByOperator(device);
  });

  it('an AcceptGrant whose tokens could not be stored is stored by the retry, which does not spend the code again', async () => {
    const device = await link();
    const { db, crypto } = voice.platform;
    const { code, customerId } = voice.amazon.issueGrantCode();
    device.secrets.push(code);
    await storeLwaGrantCode(db, device.deviceId, crypto.encrypt(code, voiceDeviceColumn(device.deviceId, 'lwa_grant_code_enc')));
    const exchanges = voice.amazon.codeExchanges();
    const since = voice.amazon.calls.length;

    class StoreFails extends AuditLog {
      override async record(entry: AuditEntry, within?: CommonQueryMethods): Promise<void> {
        if (entry.action === 'VoiceAcceptGrant') throw new Error('Connection terminated unexpectedly');
        return super.record(entry, within);
      }
    }
    const firstAttempt = runActivity(activitiesWith({ audit: new StoreFails(db) }).exchangeAlexaGrant, { deviceId: device.deviceId, knownVersion: 0 });
    await expect(firstAttempt).rejects.toThrow('Connection terminated unexpectedly');
    expect(voice.amazon.codeExchanges()).toBe(exchanges + 1);

    // Temporal's next attempt of the same activity: what Amazon answered is stored, the spent code is not sent again.
    expect(await runActivity(activitiesWith().exchangeAlexaGrant, { deviceId: device.deviceId, knownVersion: 0 })).toEqual({
      accepted: true,
      tokenVersion: 1,
      accessTokenExpiresAt: expect.any(Number),
    });
    expect(voice.amazon.codeExchanges()).toBe(exchanges + 1);
    expect(voice.amazon.calls.slice(since).filter((call) => call.endpoint === 'token' && call.status !== 200)).toEqual([]);
    const stored = await readDevice(device.deviceId);
    expect(stored).toMatchObject({ grantCode: null, version: 1, status: 'linked' });
    const refreshToken = crypto.decrypt(stored.refreshToken!, voiceDeviceColumn(device.deviceId, 'lwa_refresh_token_enc'));
    expect(voice.amazon.liveRefreshTokens(customerId)).toEqual([refreshToken]);
    expect(await auditRows(device.deviceId, 'VoiceAcceptGrant')).toEqual([expect.objectContaining({ outcome: 'success' })]);
    // A third attempt (the second's answer lost) reports what is stored.
    expect(await runActivity(activitiesWith().exchangeAlexaGrant, { deviceId: device.deviceId, knownVersion: 0 })).toMatchObject({ accepted: true, tokenVersion: 1 });
    await unlinkByOperator(device);
  });

  it('retries LWA 5xx and gateway 429s with backoff, and delivers in the end', async () => {
    const { device, customerId } = await linkWithPermission();
    const version = (await waitForDeviceState(device, () => true)).lwa!.tokenVersion;
    const since = voice.amazon.calls.length;
    voice.amazon.switches.failNext(2, 503, 'token');
    await clock.advance(HOUR);
    await waitForDeviceState(device, (state) => state.lwa!.tokenVersion === version + 1);
    expect(voice.amazon.calls.slice(since).filter((call) => call.endpoint === 'token').map((call) => call.status)).toEqual([503, 503, 200]);

    const eventsBefore = voice.amazon.events(customerId).length;
    const gatewaySince = voice.amazon.calls.length;
    voice.amazon.switches.failNext(3, 429, 'events');
    await device.handle.signal(reportStateSignal, { reason: 'retry' });
    await clock.advance(5 * MINUTE); // the backoff between attempts
    await waitForDeviceState(device, (state) => state.reportsSent === 2);
    expect(voice.amazon.calls.slice(gatewaySince).filter((call) => call.endpoint === 'events').map((call) => call.status)).toEqual([429, 429, 429, 202]);
    expect(voice.amazon.events(customerId)).toHaveLength(eventsBefore + 1);
    expect((await waitForDeviceState(device, () => true)).status).toBe('linked');
    await unlinkByOperator(device);
  });

  it('on a gateway 401, refreshes once and sends again', async () => {
    const { device, customerId } = await linkWithPermission();
    // Amazon ended the access token early: the one we hold is no longer known.
    const stored = await readDevice(device.deviceId);
    await voice.platform.db.query(sql.unsafe`
      UPDATE voice_devices SET lwa_access_token_enc = ${voice.platform.crypto.encrypt('Atza|ended-early', voiceDeviceColumn(device.deviceId, 'lwa_access_token_enc'))}
      WHERE id = ${device.deviceId}`);
    const since = voice.amazon.calls.length;
    await device.handle.signal(reportStateSignal, { reason: 'after_401' });
    const state = await waitForDeviceState(device, (current) => current.reportsSent === 2);
    expect(voice.amazon.calls.slice(since).map((call) => `${call.endpoint}:${call.status}`)).toEqual(['events:401', 'token:200', 'events:202']);
    expect(state.lwa!.tokenVersion).toBe(stored.version + 1);
    expect(voice.amazon.events(customerId).at(-1)!.event).toMatchObject({ event: { header: { name: 'ChangeReport' } } });
    await unlinkByOperator(device);
  });

  it('unlinks when the gateway says the skill is disabled (403): every token of the device revoked, audited', async () => {
    const { device, customerId } = await linkWithPermission();
    await refreshAsPlatform(voice, device);
    voice.amazon.customer(customerId)!.skillDisabled = true;
    await device.handle.signal(reportStateSignal, { reason: 'after_disable' });
    expect(await outcomeOf(voice, device.handle)).toEqual({ status: 'unlinked', direction: 'platform_permission_revoked' });
    await expectEverythingRevoked(device);
    expect(await readDevice(device.deviceId)).toMatchObject({ unlinkReason: 'platform_permission_revoked' });
    expect(await auditRows(device.deviceId, 'VoiceDeviceUnlink')).toEqual([
      expect.objectContaining({ outcome: 'success', actorType: 'client', details: expect.objectContaining({ direction: 'platform_permission_revoked' }) }),
    ]);
    expect(await auditRows(device.deviceId, 'OAuthRevoke')).toHaveLength(1);
  });

  it('unlinks when Login with Amazon answers invalid_grant (the permission is gone), without retrying', async () => {
    const { device, customerId } = await linkWithPermission();
    voice.amazon.revokeCustomer(customerId);
    const since = voice.amazon.calls.length;
    await clock.advance(HOUR);
    expect(await outcomeOf(voice, device.handle)).toEqual({ status: 'unlinked', direction: 'platform_permission_revoked' });
    expect(voice.amazon.calls.slice(since).filter((call) => call.endpoint === 'token').map((call) => call.error)).toEqual(['invalid_grant']);
    await expectEverythingRevoked(device);
  });

  it('unlinks at the request of the user: every token revoked and audited once; a later unlink of the unlinked device ends quietly', async () => {
    const { device } = await linkWithPermission();
    await refreshAsPlatform(voice, device);
    await refreshAsPlatform(voice, device);
    await device.handle.signal(unlinkSignal, { direction: 'user', requestedBy: { type: 'user', id: device.userId } });
    await device.handle.signal(unlinkSignal, { direction: 'operator', requestedBy: { type: 'operator', id: 'ops' } });
    expect(await outcomeOf(voice, device.handle)).toEqual({ status: 'unlinked', direction: 'user' });
    await expectEverythingRevoked(device);
    expect(await auditRows(device.deviceId, 'VoiceDeviceUnlink')).toEqual([
      expect.objectContaining({ actorType: 'user', details: expect.objectContaining({ direction: 'user', platform: 'alexa' }) }),
    ]);
    expect(await auditRows(device.deviceId, 'OAuthRevoke')).toEqual([expect.objectContaining({ outcome: 'success', details: expect.objectContaining({ grantRevokedNow: true }) })]);

    // What the API does for a device whose workflow is gone: signal-with-start. The new run finds it unlinked.
    const again = await voice.platform.client.workflow.signalWithStart('voiceDeviceWorkflow', {
      ...voiceDeviceWorkflowStart(voice.platform.config, { id: device.deviceId, platform: 'alexa' }),
      signal: unlinkSignal,
      signalArgs: [{ direction: 'grant_revoked', requestedBy: { type: 'user' } }],
    });
    expect(await outcomeOf(voice, again)).toEqual({ status: 'unlinked', direction: 'grant_revoked' });
    expect(await auditRows(device.deviceId, 'VoiceDeviceUnlink')).toHaveLength(1);
  });

  it('Google: asks Home Graph to SYNC, reports occupancy, and deletes the agent user exactly once even when the unlink is retried', async () => {
    const device = await link('google');
    const { googleHome } = voice;
    const syncRequests = () => googleHome.calls.filter((call) => call.endpoint === 'requestSync' && call.agentUserId === device.deviceId);
    await waitForDeviceState(device, () => syncRequests().length > 0);
    expect(syncRequests()).toHaveLength(1);
    const occupied = await addProperty(device, 'Beach house', true);
    const vacant = await addProperty(device, 'City flat', false);
    googleHome.linkAgentUser(device.deviceId); // Google's SYNC succeeded
    await device.handle.signal(reportStateSignal, { reason: 'reservation_changed' });
    await waitForDeviceState(device, (state) => state.reportsSent === 1);
    expect(googleHome.reports(device.deviceId).map((report) => report.states)).toEqual([
      { [occupied]: { occupancy: 'OCCUPIED' }, [vacant]: { occupancy: 'UNOCCUPIED' } },
    ]);

    await refreshAsPlatform(voice, device);
    loseNextAnswer.add('deleteGoogleAgentUser');
    await device.handle.signal(unlinkSignal, { direction: 'google_disconnect', requestedBy: { type: 'platform' } });
    // The first attempt deleted the agent user but its answer was lost; the retry must not ask Home Graph again.
    expect(await outcomeOf(voice, device.handle)).toEqual({ status: 'unlinked', direction: 'google_disconnect', agentUser: 'deleted_before' });
    expect(loseNextAnswer.size).toBe(0);
    expect(googleHome.deletes(device.deviceId)).toBe(1);
    expect(googleHome.calls.filter((call) => call.endpoint === 'deleteAgentUser' && call.agentUserId === device.deviceId)).toHaveLength(1);
    await expectEverythingRevoked(device);
    expect((await readDevice(device.deviceId)).agentUserDeletedAt).not.toBeNull();
    expect(await auditRows(device.deviceId, 'VoiceDeviceUnlink')).toEqual([expect.objectContaining({ actorType: 'client', details: expect.objectContaining({ direction: 'google_disconnect' }) })]);
    expect((await auditRows(device.deviceId, 'OAuthRevoke')).map((row) => row.details.homeGraphAgentUser ?? 'our grant')).toEqual(['our grant', 'deleted']);
  });

  it('Google: a report Home Graph answers 404 (the user was unlinked at Google) ends the link; the DELETE 404 counts as done', async () => {
    const device = await link('google');
    await addProperty(device, 'Farmhouse', false);
    await device.handle.signal(reportStateSignal, { reason: 'reservation_changed' });
    expect(await outcomeOf(voice, device.handle)).toEqual({ status: 'unlinked', direction: 'google_disconnect', agentUser: 'not_found' });
    await expectEverythingRevoked(device);
    expect(voice.googleHome.calls.filter((call) => call.agentUserId === device.deviceId).map((call) => `${call.endpoint}:${call.status}`)).toEqual([
      'requestSync:404',
      'reportState:404',
      'deleteAgentUser:404',
    ]);
  });

  it('keeps every secret out of the workflow histories', async () => {
    expect(linked.length).toBeGreaterThanOrEqual(9);
    const { config } = voice.platform;
    const secrets = new Set([
      ...linked.flatMap((device) => device.secrets),
      ...voice.amazon.issuedSecrets(),
      ...voice.googleHome.issuedSecrets(),
      LWA_CLIENT.clientSecret,
      ...[config.encryption.activeKey, config.payloadEncryption.activeKey].filter((key): key is string => key !== undefined),
    ]);
    const privateKey = (JSON.parse(config.voice.google.serviceAccountKey!) as { private_key: string }).private_key;
    secrets.add(privateKey.split('\n')[1]!);
    for (const device of linked) {
      const texts = await historyPayloadTexts(device.handle);
      expect(texts.join('\n')).toContain(device.deviceId);
      for (const secret of secrets) expect(texts.some((text) => text.includes(secret)), `${device.deviceId} history holds a secret`).toBe(false);
    }
  });
});
