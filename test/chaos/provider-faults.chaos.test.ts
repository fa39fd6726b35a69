import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { newGoogleAccountId } from '../../fakes/google-tokens';
import { startFakeMicrosoft, type FakeMicrosoft } from '../../fakes/microsoft';
import { startFakeAirbnb, type FakeAirbnb } from '../../fakes/airbnb';
import { startFakeBooking, type FakeBooking } from '../../fakes/booking';
import { TokenEndpointFaults } from '../../fakes/token-endpoint-faults';
import { GOOGLE_TEST_CLIENT, type TestPlatform } from '../helpers/platform';
import { connectGoogleAccount } from '../helpers/google-calendar';
import { connectMicrosoftCalendar, MICROSOFT_TEST_CLIENT } from '../helpers/microsoft';
import { AIRBNB_TEST_CLIENT, AIRBNB_WEBHOOK_SECRET, connectAirbnb } from '../helpers/airbnb';
import { BOOKING_TEST_ACCOUNT, connectBooking } from '../helpers/booking';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';
import { eventually } from '../helpers/eventually';
import { LogCapture } from '../helpers/secret-scan';
import { recordFault } from './fault-ledger';
import { expectNoSecretLeft } from './harness/secret-scan-after-run';
import { accessTokenChains } from './harness/refresh-records';
import { seededRandom } from './harness/seeded-random';
import { fakeProvidersEnvironment, startPlatformOnSimulatedClock } from './harness/simulated-platform';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const OUTAGE_MS = 10 * MINUTE;
const OUTAGE_RATE = 0.3;
/** Most faults answer 5xx at once; a third leave the request unanswered until the platform's request timeout. */
const TIMEOUT_SHARE = 1 / 3;
const SEED = 20_261_207;
/** Clocks of the fake and of the activities differ by the time a request takes; a refresh is never this early by design. */
const CLOCK_SLACK_MS = 5 * SECOND;

/** Access-token lifetimes, from short (a refresh every minute or two) to longer than the outage. */
const LIFETIME_SECONDS = { google: 120, microsoft: 420, airbnb: 600, booking: 300 } as const;
type Provider = keyof typeof LIFETIME_SECONDS;

/**
 * Issue 11, "Provider faults": for ten minutes of simulated time, 30% of the token endpoints' requests
 * fail (503, or no answer until the platform gives up). Every access token must still be replaced
 * before it expires, and none replaced before it has lived half its life: no refresh loop, even for
 * tokens shorter than the configured margin.
 */
describe('token endpoints failing 30% of the time for ten minutes', () => {
  let temporal: TestWorkflowEnvironment;
  let clock: SimulatedClock;
  let platform: TestPlatform;
  let google: FakeGoogle;
  let microsoft: FakeMicrosoft;
  let airbnb: FakeAirbnb;
  let booking: FakeBooking;
  let faults: Record<Provider, TokenEndpointFaults>;
  const apiLog = new LogCapture();
  const sessionTokens: string[] = [];

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    clock = await SimulatedClock.of(temporal);
    const random = seededRandom(SEED);
    const fakeFaults = () => new TokenEndpointFaults({ clock: clock.now, random, outageTimeoutShare: TIMEOUT_SHARE });
    faults = { google: fakeFaults(), microsoft: fakeFaults(), airbnb: fakeFaults(), booking: fakeFaults() };
    google = await startFakeGoogle({ ...GOOGLE_TEST_CLIENT, clock: clock.now, accessTokenLifetimeSeconds: LIFETIME_SECONDS.google, faults: faults.google });
    microsoft = await startFakeMicrosoft({ ...MICROSOFT_TEST_CLIENT, clock: clock.now, accessTokenLifetimeSeconds: LIFETIME_SECONDS.microsoft, faults: faults.microsoft });
    airbnb = await startFakeAirbnb({
      ...AIRBNB_TEST_CLIENT,
      clock: clock.now,
      accessTokenLifetimeSeconds: LIFETIME_SECONDS.airbnb,
      webhook: { secret: AIRBNB_WEBHOOK_SECRET },
      faults: faults.airbnb,
    });
    booking = await startFakeBooking({ ...BOOKING_TEST_ACCOUNT, clock: clock.now, tokenLifetimeSeconds: LIFETIME_SECONDS.booking, faults: faults.booking });
    platform = await startPlatformOnSimulatedClock(clock, { temporal, google, logDestination: apiLog, environment: fakeProvidersEnvironment({ microsoft, airbnb, booking }) });
  });

  afterAll(async () => {
    await platform?.close();
    await Promise.all([google?.close(), microsoft?.close(), airbnb?.close(), booking?.close(), temporal?.teardown()]);
  });

  const signUp = async (email: string) => {
    const signedUp = await platform.signUp(email);
    sessionTokens.push(signedUp.sessionToken);
    return signedUp;
  };

  const statuses = () =>
    platform.db.anyFirst(sql.type(z.object({ status: z.string() }))`SELECT status::text FROM integration_connections ORDER BY created_at`);

  it('refreshes every token before it expires, and none in a loop', { timeout: 240_000 }, async () => {
    await clock.catchUp();
    for (const email of ['faults-google@example.com', 'faults-google-2@example.com']) {
      sessionTokens.push((await connectGoogleAccount(platform, google, email, newGoogleAccountId())).sessionToken);
    }
    await connectMicrosoftCalendar(platform, microsoft, (await signUp('faults-microsoft@example.com')).sessionToken);
    airbnb.createHost([]);
    await connectAirbnb(platform, (await signUp('faults-airbnb@example.com')).sessionToken);
    expect((await connectBooking(platform, (await signUp('faults-booking@example.com')).sessionToken)).status).toBe(202);
    await eventually(async () => (await statuses()).every((status) => status === 'active'), 60_000, 'every connection active');

    await clock.catchUp();
    const outageStartedAt = clock.now();
    for (const provider of Object.keys(faults) as Provider[]) faults[provider].setOutageRate(OUTAGE_RATE);
    await clock.advance(OUTAGE_MS);
    for (const provider of Object.keys(faults) as Provider[]) faults[provider].setOutageRate(0);
    const outageEndedAt = clock.now();

    const late: string[] = [];
    const early: string[] = [];
    const counts: Record<string, number> = {};
    for (const provider of Object.keys(faults) as Provider[]) {
      const lifetimeMs = LIFETIME_SECONDS[provider] * SECOND;
      const chains = accessTokenChains(faults[provider].issuedAccessTokens);
      for (const chain of chains.values()) {
        for (const token of chain) {
          // Tokens expiring after the outage may still be waiting for their successor.
          if (token.expiresAt <= outageStartedAt || (token.successorIssuedAt === undefined && token.expiresAt > outageEndedAt)) continue;
          const lived = token.successorIssuedAt === undefined ? undefined : token.successorIssuedAt - token.issuedAt;
          if (token.successorIssuedAt === undefined || token.successorIssuedAt >= token.expiresAt) late.push(`${provider}: token of ${new Date(token.issuedAt).toISOString()} replaced ${lived === undefined ? 'never' : `after ${lived / SECOND} s`} (lives ${lifetimeMs / SECOND} s)`);
          // Replacements before the outage include the API's check of Booking.com credentials (a token it does not keep).
          else if (token.successorIssuedAt > outageStartedAt && lived! < lifetimeMs / 2 - CLOCK_SLACK_MS) early.push(`${provider}: token of ${new Date(token.issuedAt).toISOString()} replaced after ${lived! / SECOND} s (lives ${lifetimeMs / SECOND} s)`);
        }
        const refreshesInOutage = chain.filter((token) => token.issuedAt > outageStartedAt && token.issuedAt <= outageEndedAt).length;
        const perLifetime = Math.round((refreshesInOutage / (OUTAGE_MS / lifetimeMs)) * 100) / 100;
        counts[`${provider} refreshes per lifetime`] = Math.max(counts[`${provider} refreshes per lifetime`] ?? 0, perLifetime);
      }
      counts[`${provider} faults`] = faults[provider].outages.status + faults[provider].outages.timeout;
    }
    const finalStatuses = await statuses();
    const injected = Object.values(faults).reduce((sum, fault) => sum + fault.outages.status + fault.outages.timeout, 0);
    recordFault({
      fault: `token endpoints fail ${OUTAGE_RATE * 100}% of requests (503 or no answer) for ${OUTAGE_MS / MINUTE} simulated minutes (Google ${LIFETIME_SECONDS.google} s tokens, Booking.com ${LIFETIME_SECONDS.booking} s, Airbnb ${LIFETIME_SECONDS.airbnb} s, Microsoft ${LIFETIME_SECONDS.microsoft} s)`,
      injected,
      outcomes: {
        ...counts,
        tokens_replaced_late: late.length,
        tokens_replaced_before_half_life: early.length,
        connections_active: finalStatuses.filter((status) => status === 'active').length,
        connections_not_active: finalStatuses.filter((status) => status !== 'active').length,
      },
      invariant: 'errors classified and retried within the token lifetime; the refresh margin scales with the lifetime (no loop, never late)',
    });

    expect(injected).toBeGreaterThan(0);
    expect(finalStatuses).toEqual(['active', 'active', 'active', 'active', 'active']);
    expect(late).toEqual([]);
    expect(early).toEqual([]);
  });

  it('leaves no secret in plaintext in the database, the Temporal histories or the api-server log', async () => {
    await expectNoSecretLeft('token endpoints failing for ten simulated minutes', platform, {
      logs: [apiLog.text],
      ownSecrets: sessionTokens,
      providerSecrets: [...google.issuedSecrets(), ...microsoft.issuedSecrets(), ...airbnb.issuedSecrets(), ...booking.issuedSecrets()],
    });
  });
});
