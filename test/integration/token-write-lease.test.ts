import { randomUUID } from 'node:crypto';
import { CancelledFailure } from '@temporalio/common';
import pg from 'pg';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Activities, TokenState } from '../../activities';
import { FailureType, REFRESH_TOKEN_LOST_IN_FLIGHT } from '../../activities/failure-types';
import type { FakeAirbnb, FakeAirbnbOAuthCall } from '../../fakes/airbnb';
import type { FakeGoogle } from '../../fakes/google';
import type { FakeMicrosoft } from '../../fakes/microsoft';
import { eventually } from '../helpers/eventually';
import { attempt, failureOf, gateAnswers, startTokenWriteBed, valueOf, type AnswerGate, type TokenWriteBed } from '../helpers/token-writes';

/**
 * One writer of a connection's tokens across activity attempts (issue 11, defect 1): Temporal starts
 * the next attempt when one times out, not when it has stopped. Two attempts run here side by side,
 * as a worker would run them, against the fake providers over HTTP and a real Postgres.
 */

/** Short, so heartbeats counted by condition come quickly. */
const HEARTBEAT_INTERVAL_MS = 200;

let bed: TokenWriteBed<'airbnb' | 'google' | 'microsoft'>;
let airbnb: FakeAirbnb;
let google: FakeGoogle;
let microsoft: FakeMicrosoft;
let activities: Activities;
/**
 * A first attempt whose lease the test lapses by hand: its renewals come after the test ends, so none
 * lands between the lapse and the takeover (a renewal extends a lapsed lease its holder still has).
 */
let unrenewedActivities: Activities;

beforeAll(async () => {
  bed = await startTokenWriteBed({
    fakes: {
      // Airbnb's grace for a rotated-away refresh token is unknown: here it has none, the worst case.
      airbnb: { rotationGraceSeconds: 0 },
      google: {},
      // Microsoft rotates on every refresh; here the token presented dies at once, the worst case.
      microsoft: { rotationGraceSeconds: 0 },
    },
    environment: { TOKEN_LEASE_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS) },
    // The worker's pool: lock waits are not bounded, as in production.
    process: 'worker',
  });
  ({ airbnb, google, microsoft, activities } = bed);
  unrenewedActivities = bed.activitiesWith({ tokenLease: { ...bed.config.tokenLease, heartbeatIntervalMs: 10 * 60 * 1000 } });
});

afterAll(() => bed?.close());

beforeEach(() => {
  airbnb.switches.delayMs = 0;
  airbnb.switches.holdAnswer = undefined;
  google.reset();
  microsoft.reset();
});


const refreshInput = (connectionId: string, state: TokenState): [{ connectionId: string; expectedVersion: number }] => [{ connectionId, expectedVersion: state.tokenVersion }];

/**
 * A first attempt whose lease lapsed while the provider's answer to it is held, and a second attempt
 * that took the lease over; `arrivals` say what each one's arrival at the provider is.
 */
async function takenOver(connectionId: string, state: TokenState, gate: AnswerGate, arrivals: [first: string, second: string]) {
  const first = attempt(unrenewedActivities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 1 });
  await eventually(() => gate.arrived() === 1, 10_000, arrivals[0]);
  // The first attempt's renewals were late (its worker busy, the pool slow): its lease lapses and the next attempt takes it over.
  await bed.expireLease(connectionId);
  const second = attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 2 });
  await eventually(() => gate.arrived() === 2, 10_000, arrivals[1]);
  return { first, second };
}

/** An attempt given up on (cancelled, as Temporal does on a timeout) while the provider's answer to it is held; answers to later requests pass. */
async function abandonedAttempt(connectionId: string, state: TokenState, gate: AnswerGate, arrival: string) {
  const first = attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 1 });
  await eventually(() => gate.arrived() === 1, 10_000, arrival);
  first.environment.cancel('TIMED_OUT');
  const outcome = await first.settled;
  expect('error' in outcome).toBe(true);
  gate.passNew();
  return outcome;
}

const airbnbTokenCalls = (grant: 'code' | 'refresh') =>
  airbnb.calls.filter((call): call is FakeAirbnbOAuthCall => call.endpoint === 'token' && 'grant' in call && call.grant === grant);

/** Some statement waits for a row lock on the connection's lease: the attempt is about to store, or renew. */
const waitsForLease = (statement: string) =>
  bed.services.db.oneFirst(sql.type(z.object({ waiting: z.boolean() }))`
    SELECT count(*) > 0 AS waiting FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE ${`%${statement}%`}`);

describe('token writes across activity attempts', () => {
  it('two overlapping refresh attempts call Airbnb once: the second waits for the lease, then answers from the database', async () => {
    const { connectionId, state } = await bed.activeConnection('airbnb');
    const before = await bed.stored(connectionId);
    const refreshesBefore = airbnbTokenCalls('refresh').length;
    const gate = gateAnswers(airbnb.switches);

    const first = attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 1 });
    await eventually(() => gate.arrived() === 1, 10_000, 'the first attempt reached Airbnb');
    // Temporal gave up on the first attempt (no answer within its timeout) and starts the next one.
    const second = failureOf(await attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 2 }).settled);
    expect(second).toMatchObject({ type: FailureType.tokenWriteInProgress, nonRetryable: false });
    // It heartbeats while Airbnb is slow.
    const heartbeatsWhileHeld = first.heartbeats();
    await eventually(() => first.heartbeats() >= heartbeatsWhileHeld + 2, 10_000, 'the first attempt heartbeat while Airbnb held its answer');
    gate.passNew();
    gate.release(0);

    const refreshed = valueOf(await first.settled);
    expect(refreshed.tokenVersion).toBe(state.tokenVersion + 1);
    const third = valueOf(await attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 3 }).settled);
    expect(third).toEqual(refreshed);

    const calls = airbnbTokenCalls('refresh').slice(refreshesBefore);
    expect(calls).toEqual([expect.objectContaining({ status: 200, rotated: false })]);
    const after = await bed.stored(connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: refreshed.tokenVersion, refreshToken: before.refreshToken, lastErrorKind: null });
    expect(airbnb.liveRefreshTokens()).toContain(after.refreshToken);
    expect(await bed.refreshAudits(connectionId)).toHaveLength(1);
  });

  it('heartbeats from the start of the attempt, while it still waits for the database before the lease', async () => {
    const { connectionId, state } = await bed.activeConnection('airbnb');
    // Another transaction holds the lease row: taking the lease waits until it ends.
    const releaseRow = await bed.lockLeaseRow(connectionId);
    const waiting = attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state));
    await eventually(() => waiting.heartbeats() >= 2, 10_000, 'heartbeats while the lease row is locked');
    await releaseRow();
    expect(valueOf(await waiting.settled).tokenVersion).toBe(state.tokenVersion + 1);
  });

  it('an attempt that lost its lease while Airbnb answered still stores the answer, as nobody stored first; the attempt that took over answers the stored state', async () => {
    const { connectionId, state } = await bed.activeConnection('airbnb');
    const gate = gateAnswers(airbnb.switches);
    const { first, second } = await takenOver(connectionId, state, gate, ['the first attempt reached Airbnb', 'the second attempt reached Airbnb']);

    gate.release(0);
    const stored1 = valueOf(await first.settled);
    expect(stored1.tokenVersion).toBe(state.tokenVersion + 1);
    gate.release(1);
    expect(valueOf(await second.settled)).toEqual(stored1);

    const after = await bed.stored(connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: stored1.tokenVersion, lastErrorKind: null });
    expect(airbnb.liveRefreshTokens()).toContain(after.refreshToken);
    expect(await bed.refreshAudits(connectionId)).toHaveLength(1);
  });

  it('a refusal of the token another attempt rotated away, once that attempt stored its answer, answers the stored state', async () => {
    const { connectionId, state } = await bed.activeConnection('google-calendar');
    google.switches.rotateRefreshTokens = true;
    const gate = gateAnswers(google.switches);
    // Google refused the second attempt's token: the first one's call had rotated it away.
    const { first, second } = await takenOver(connectionId, state, gate, ['Google rotated for the first attempt', 'Google refused the second attempt']);

    gate.release(0);
    const rotated = valueOf(await first.settled);
    gate.release(1);
    expect(valueOf(await second.settled)).toEqual(rotated);

    const after = await bed.stored(connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion + 1, lastErrorKind: null });
    expect(google.liveRefreshTokens()).toEqual([after.refreshToken]);
  });

  it('an attempt that finds its lease taken over before its fallback call fails as TokenWriteInProgress and records no provider error', async () => {
    const { connectionId, state } = await bed.activeConnection('google-calendar');
    const { refreshToken } = await bed.stored(connectionId);
    // A rotation Google never committed: the newest token is unknown upstream, the previous one is live.
    await bed.overwriteRefreshTokens(connectionId, { current: `1//never-committed-${randomUUID()}`, previous: refreshToken! });
    const gate = gateAnswers(google.switches);
    const { first, second } = await takenOver(connectionId, state, gate, ['Google refused the first attempt', 'Google refused the second attempt']);
    gate.passNew();

    gate.release(0);
    expect(failureOf(await first.settled)).toMatchObject({ type: FailureType.tokenWriteInProgress, nonRetryable: false });
    expect(await bed.stored(connectionId)).toMatchObject({ tokenVersion: state.tokenVersion, lastErrorKind: null });
    gate.release(1);
    expect(valueOf(await second.settled).tokenVersion).toBe(state.tokenVersion + 1);
  });

  it('a cancelled attempt aborts its provider call at once, stores nothing and leaves the lease free', async () => {
    const { connectionId, state } = await bed.activeConnection('airbnb');
    const outcome = await abandonedAttempt(connectionId, state, gateAnswers(airbnb.switches), 'the attempt reached Airbnb');

    expect('error' in outcome && outcome.error).toBeInstanceOf(CancelledFailure);
    expect(await bed.stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion });
    const next = valueOf(await attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 2 }).settled);
    expect(next.tokenVersion).toBe(state.tokenVersion + 1);
  });

  it('when a rotation was answered into a dead attempt and no token we hold works, needs_reauth says so: refresh_token_lost_in_flight', async () => {
    const { connectionId, state } = await bed.activeConnection('microsoft-calendar');
    // Microsoft rotated (the token presented is dead at once here), but its answer is held.
    await abandonedAttempt(connectionId, state, gateAnswers(microsoft.switches), 'Microsoft rotated the refresh token');

    const second = failureOf(await attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 2 }).settled);

    expect(second).toMatchObject({ type: FailureType.refreshTokenLostInFlight, nonRetryable: true });
    expect(await bed.stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion, lastErrorKind: REFRESH_TOKEN_LOST_IN_FLIGHT });
  });

  it('a provider that does not rotate refusing after an unanswered call was revoked, not lost in flight: GrantRevoked', async () => {
    const { connectionId, state } = await bed.activeConnection('google-calendar');
    await abandonedAttempt(connectionId, state, gateAnswers(google.switches), 'the first attempt reached Google');
    // The user revoked our access meanwhile.
    google.revokeAllGrants();

    const second = failureOf(await attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 2 }).settled);

    expect(second).toMatchObject({ type: FailureType.grantRevoked, nonRetryable: true });
    expect(await bed.stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion, lastErrorKind: 'invalid_grant' });
  });

  it('two overlapping code exchanges spend the code once; the second answers from the database', async () => {
    const pending = await bed.pendingConnection('airbnb');
    const codesBefore = airbnbTokenCalls('code').length;
    const gate = gateAnswers(airbnb.switches);

    const first = attempt(activities.exchangeAuthorizationCode, [pending], { attempt: 1 });
    await eventually(() => gate.arrived() === 1, 10_000, 'the first attempt reached Airbnb');
    const second = failureOf(await attempt(activities.exchangeAuthorizationCode, [pending], { attempt: 2 }).settled);
    expect(second).toMatchObject({ type: FailureType.tokenWriteInProgress, nonRetryable: false });

    gate.passNew();
    gate.release(0);
    const exchanged = valueOf(await first.settled);
    expect(valueOf(await attempt(activities.exchangeAuthorizationCode, [pending], { attempt: 3 }).settled)).toEqual(exchanged);
    expect(airbnbTokenCalls('code').slice(codesBefore)).toEqual([expect.objectContaining({ status: 200 })]);
    expect(await bed.stored(pending.connectionId)).toMatchObject({ status: 'active', tokenVersion: exchanged.tokenVersion });
  });

  it('an exchange whose lease is taken over while Google answers stores what it obtained, as nobody stored first', async () => {
    const pending = await bed.pendingConnection('google-calendar');
    const liveBefore = new Set(google.liveRefreshTokens());
    const gate = gateAnswers(google.switches);
    const first = attempt(unrenewedActivities.exchangeAuthorizationCode, [pending], { attempt: 1 });
    await eventually(() => gate.arrived() === 1, 10_000, 'Google issued tokens for the first attempt');
    // The next attempt takes the lease over; its transaction keeps the row until the first attempt has Google's answer and waits to store it.
    const nextAttempt = new pg.Client({ connectionString: bed.database.url });
    await nextAttempt.connect();
    try {
      await nextAttempt.query('BEGIN');
      await nextAttempt.query(`UPDATE integration_token_leases SET holder = 'the next attempt', expires_at = now() + interval '1 minute' WHERE connection_id = $1`, [
        pending.connectionId,
      ]);
      gate.release(0);
      await eventually(() => waitsForLease('SELECT holder FROM integration_token_leases'), 15_000, 'the first attempt waits to store its answer');
      await nextAttempt.query('COMMIT');
    } finally {
      await nextAttempt.end();
    }

    const exchanged = valueOf(await first.settled);
    expect(google.calls.filter((call) => call.endpoint === 'token').map((call) => call.status)).toEqual([200]);
    const after = await bed.stored(pending.connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: exchanged.tokenVersion, lastErrorKind: null });
    expect(exchanged.tokenVersion).toBe(1);
    // The compare-and-set let this answer stand: what Google issued is the connection's, never live and nobody's.
    expect(google.liveRefreshTokens().filter((token) => !liveBefore.has(token))).toEqual([after.refreshToken]);
  });
});
