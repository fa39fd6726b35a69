import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { reportStateSignal } from '../../workflows/voice-device-messages';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';
import { introspect, seedStay, startVoiceTestPlatform, type VoiceTestPlatform } from '../helpers/voice';
import { activeTokens, dayOf, grantAlexaPermission, linkDevice, refreshAsPlatform, waitForDeviceState } from '../helpers/voice-devices';

const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;
const YEAR = 365 * DAY;

/**
 * Login with Amazon's access tokens live an hour. A year of hourly refreshes is about 9,500 workflow
 * cycles, 10 to 18 minutes on a 2-core machine, more than CI can give one test: the year runs with
 * day-long LWA tokens unless VOICE_YEAR_HOURLY_LWA=1, and the week before it refreshes hourly.
 */
const YEAR_LWA_LIFETIME_MS = process.env.VOICE_YEAR_HOURLY_LWA === '1' ? HOUR : DAY;

/** A time-skipping server and the voice platform on its simulated clock, for one describe block. */
function simulatedVoicePlatform(lwaLifetimeMs: number) {
  const context = {} as { temporal: TestWorkflowEnvironment; clock: SimulatedClock; voice: VoiceTestPlatform };
  beforeAll(async () => {
    context.temporal = await startTimeSkippingServer();
    context.clock = await SimulatedClock.of(context.temporal);
    context.voice = await startVoiceTestPlatform(context.temporal, {}, { clock: context.clock, lwaAccessTokenLifetimeSeconds: lwaLifetimeMs / 1000 });
  });
  afterAll(async () => {
    await context.voice?.close();
    await context.temporal?.teardown();
  });
  return context;
}

/** Every LWA token call succeeded, each refresh came before the previous token expired, and the gateway never saw an expired token. */
function expectLwaTokensAlwaysFresh(voice: VoiceTestPlatform, lwaLifetimeMs: number, spanMs: number): void {
  const tokenCalls = voice.amazon.calls.filter((call) => call.endpoint === 'token');
  expect(tokenCalls.every((call) => call.status === 200)).toBe(true);
  expect(tokenCalls[0]!.grantType).toBe('authorization_code');
  expect(tokenCalls.length).toBeGreaterThan(spanMs / lwaLifetimeMs);
  for (let index = 1; index < tokenCalls.length; index++) expect(tokenCalls[index]!.at - tokenCalls[index - 1]!.at).toBeLessThan(lwaLifetimeMs);
  expect(voice.amazon.expiredTokenCalls()).toBe(0);
}

describe('a voice device over a simulated week with hourly LWA tokens (time-skipping)', () => {
  const context = simulatedVoicePlatform(HOUR);

  it('refreshes the LWA tokens before every hourly expiry while Alexa keeps refreshing ours', async () => {
    const { clock, voice } = context;
    await clock.catchUp();
    const used = await linkDevice(voice, voice.alexaClient);
    await seedStay(voice.platform, used.userId, { property: 'Garden flat', guest: null, checkIn: dayOf(clock.now(), 3), checkOut: dayOf(clock.now(), 5) });
    const { result } = await grantAlexaPermission(voice, used);
    expect(result).toMatchObject({ accepted: true });
    await waitForDeviceState(used, (state) => state.reportsSent === 1);
    const startedAt = clock.now();
    for (let day = 1; day <= 7; day++) {
      await clock.advance(DAY);
      expect(await refreshAsPlatform(voice, used), `day ${day}`).toEqual({ status: 200 });
      await used.handle.signal(reportStateSignal, { reason: 'daily' });
    }
    const state = await waitForDeviceState(used, (current) => current.reportsSent >= 2);
    expect(state.status).toBe('linked');
    expect(state.lwa!.accessTokenExpiresAt).toBeGreaterThan(clock.now());
    expectLwaTokensAlwaysFresh(voice, HOUR, clock.now() - startedAt);
  });
});

/**
 * One simulated year of two Alexa device links on the time-skipping server, with the device lifetime
 * of production (device refresh tokens live DEVICE_REFRESH_TOKEN_TTL_SECONDS = 1 year from their last
 * use). The first is used every day: Alexa refreshes our tokens through our real token endpoint (on
 * the simulated clock) and the workflow reports to the event gateway, with LWA tokens it refreshes
 * before each expiry. The second is never used after linking, and its workflow unlinks it when its
 * last refresh token expires.
 */
describe('a voice device over one simulated year (time-skipping)', () => {
  const context = simulatedVoicePlatform(YEAR_LWA_LIFETIME_MS);

  it('keeps a used link alive all year with every token fresh, and unlinks the unused one at the end of its lifetime', { timeout: 60 * 60_000 }, async () => {
    const { clock, voice } = context;
    await clock.catchUp();
    const linkedAt = clock.now();
    const used = await linkDevice(voice, voice.alexaClient);
    const unused = await linkDevice(voice, voice.alexaClient);
    await seedStay(voice.platform, used.userId, { property: 'Harbour loft', guest: null, checkIn: dayOf(clock.now(), 100), checkOut: dayOf(clock.now(), 107) });
    const { customerId, result } = await grantAlexaPermission(voice, used);
    expect(result).toMatchObject({ accepted: true });
    await waitForDeviceState(used, (state) => state.reportsSent === 1);
    const firstRunId = (await used.handle.describe()).runId;
    const startedAt = clock.now();
    const timing = performance.now();

    for (let day = 1; day <= 365; day++) {
      await clock.advance(DAY);
      // Alexa refreshes our token as a skill in use does, and always gets a new pair.
      expect(await refreshAsPlatform(voice, used), `day ${day}`).toEqual({ status: 200 });
      await used.handle.signal(reportStateSignal, { reason: 'daily' });
    }
    await clock.advance(DAY);
    const elapsedMs = performance.now() - timing;
    console.info(`one simulated year with ${YEAR_LWA_LIFETIME_MS / HOUR}-hour LWA tokens took ${(elapsedMs / 1000).toFixed(0)} s`);
    expect(clock.now() - startedAt).toBeGreaterThan(YEAR);

    // The used device: linked, its workflow running (continued as new, with a bounded history).
    const state = await waitForDeviceState(used, (current) => current.reportsSent >= 300);
    expect(state.status).toBe('linked');
    expect((await used.handle.describe()).status.name).toBe('RUNNING');
    expect((await used.handle.describe()).runId).not.toBe(firstRunId);
    expect((await used.handle.fetchHistory()).events!.length).toBeLessThan(3000);
    // Its newest refresh token is live; the first one was rotated away long ago.
    expect(await introspect(voice.platform, used.client, used.tokens.refreshToken)).toMatchObject({ active: true });
    expect(await introspect(voice.platform, used.client, used.issued[1]!)).toEqual({ active: false });

    // LWA: every refresh before the previous token expired, none failed, and the gateway never saw an expired token.
    expectLwaTokensAlwaysFresh(voice, YEAR_LWA_LIFETIME_MS, YEAR);
    expect(state.lwa!.accessTokenExpiresAt).toBeGreaterThan(clock.now());
    const events = voice.amazon.calls.filter((call) => call.endpoint === 'events');
    expect(events.length).toBeGreaterThanOrEqual(366);
    expect(events.every((call) => call.status === 202 && call.customerId === customerId)).toBe(true);

    // The unused device: unlinked by its own workflow once its refresh token expired, every token inactive.
    expect(await unused.handle.result()).toEqual({ status: 'unlinked', direction: 'unused' });
    expect(await activeTokens(voice, unused)).toEqual([]);
    const unlinked = await voice.platform.db.one(sql.type(z.object({ status: z.string(), unlinkReason: z.string().nullable(), unlinkedAt: z.number() }))`
      SELECT status, unlink_reason AS "unlinkReason", unlinked_at AS "unlinkedAt" FROM voice_devices WHERE id = ${unused.deviceId}`);
    expect(unlinked).toMatchObject({ status: 'unlinked', unlinkReason: 'unused' });
    // Token lifetimes count from whole seconds (JWT iat), so the last token may end up to a second before linkedAt + YEAR.
    expect(unlinked.unlinkedAt).toBeGreaterThanOrEqual(linkedAt + YEAR - 1000);
  });
});
