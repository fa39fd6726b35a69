import { randomUUID } from 'node:crypto';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import pg from 'pg';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createActivities, type Activities, type TokenState } from '../../activities';
import { FailureType, REFRESH_TOKEN_LOST_IN_FLIGHT } from '../../activities/failure-types';
import { migrate } from '../../db/migrate';
import { attachCodeToAuthorization, insertAuthorization } from '../../db/queries/authorizations';
import { findOrCreateLiveConnection } from '../../db/queries/connections';
import { insertUser } from '../../db/queries/users';
import { startFakeAirbnb, type FakeAirbnb, type FakeAirbnbOAuthCall } from '../../fakes/airbnb';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { startFakeMicrosoft, type FakeMicrosoft } from '../../fakes/microsoft';
import { loadConfig, type Config } from '../../platform/config';
import { generateEncryptionKey, type FieldBinding } from '../../platform/integration-crypto';
import { createPkcePair } from '../../platform/pkce';
import { redirectUriFor, type ProviderId } from '../../platform/providers/provider';
import { hashBearerValue, randomToken } from '../../platform/secrets';
import { createPlatformServices, type PlatformServices } from '../../platform/services';
import { createSsoSessionSync } from '../../platform/sso/backchannel-delivery';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { eventually } from '../helpers/eventually';
import { AIRBNB_TEST_CLIENT } from '../helpers/airbnb';
import { microsoftEnvironment, MICROSOFT_TEST_CLIENT } from '../helpers/microsoft';
import { fakeGoogleEnvironment, GOOGLE_TEST_CLIENT } from '../helpers/platform';

/**
 * One writer of a connection's tokens across activity attempts (issue 11, defect 1): Temporal starts
 * the next attempt when one times out, not when it has stopped. Two attempts run here side by side,
 * as a worker would run them, against the fake providers over HTTP and a real Postgres.
 */

/** Short, so heartbeats counted by condition come quickly. */
const HEARTBEAT_INTERVAL_MS = 200;

let database: TestDatabase;
let airbnb: FakeAirbnb;
let google: FakeGoogle;
let microsoft: FakeMicrosoft;
let config: Config;
let services: PlatformServices;
let activities: Activities;
/**
 * A first attempt whose lease the test lapses by hand: its renewals come after the test ends, so none
 * lands between the lapse and the takeover (a renewal extends a lapsed lease its holder still has).
 */
let unrenewedActivities: Activities;

beforeAll(async () => {
  database = await createTestDatabase(inject('databaseUrl'));
  await migrate(database.url);
  // Airbnb's grace for a rotated-away refresh token is unknown: here it has none, the worst case.
  airbnb = await startFakeAirbnb({ ...AIRBNB_TEST_CLIENT, rotationGraceSeconds: 0 });
  google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
  // Microsoft rotates on every refresh; here the token presented dies at once, the worst case.
  microsoft = await startFakeMicrosoft({ ...MICROSOFT_TEST_CLIENT, rotationGraceSeconds: 0 });
  config = loadConfig({
    APP_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATABASE_URL: database.url,
    INTEGRATION_ENCRYPTION_KEY: generateEncryptionKey(),
    AIRBNB_CLIENT_ID: AIRBNB_TEST_CLIENT.clientId,
    AIRBNB_CLIENT_SECRET: AIRBNB_TEST_CLIENT.clientSecret,
    AIRBNB_AUTHORIZE_URL: airbnb.authorizeUrl,
    AIRBNB_API_URL: airbnb.apiUrl,
    ...fakeGoogleEnvironment(google),
    ...microsoftEnvironment(microsoft),
    TOKEN_LEASE_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS),
  });
  // The worker's pool: lock waits are not bounded, as in production.
  services = await createPlatformServices(config, { process: 'worker' });
  const dependencies = { ...services, sso: createSsoSessionSync(config, services), clock: () => new Date() };
  activities = createActivities(dependencies);
  unrenewedActivities = createActivities({ ...dependencies, tokenLease: { ...config.tokenLease, heartbeatIntervalMs: 10 * 60 * 1000 } });
});

afterAll(async () => {
  await services?.db.end();
  await airbnb?.close();
  await google?.close();
  await microsoft?.close();
  await database?.drop();
});

beforeEach(() => {
  airbnb.switches.delayMs = 0;
  airbnb.switches.holdAnswer = undefined;
  google.reset();
  microsoft.reset();
});

const openGates: Array<() => void> = [];
afterEach(() => openGates.splice(0).forEach((release) => release()));

/**
 * Holds every token answer of a fake until the test releases it, by the order the requests arrived.
 * `passNew` lets requests that arrive from then on through; those held stay held.
 */
function gateAnswers(switches: { holdAnswer: (() => Promise<void>) | undefined }) {
  const held: Array<() => void> = [];
  switches.holdAnswer = () =>
    new Promise<void>((resolve) => {
      held.push(resolve);
      openGates.push(resolve);
    });
  return {
    arrived: () => held.length,
    release: (index: number) => held[index]!(),
    passNew: () => (switches.holdAnswer = undefined),
  };
}

/** The next attempt may take the lease: the holder's worker looks dead. */
async function expireLease(connectionId: string): Promise<void> {
  await services.db.query(sql.unsafe`UPDATE integration_token_leases SET expires_at = now() - interval '1 second' WHERE connection_id = ${connectionId}`);
}

/** Locks the connection's lease row in a transaction of its own, until `release`. */
function lockLeaseRow(connectionId: string) {
  let locked!: () => void;
  let release!: () => void;
  const lockedPromise = new Promise<void>((resolve) => (locked = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  const transaction = services.db.transaction(async (connection) => {
    await connection.query(sql.unsafe`SELECT 1 FROM integration_token_leases WHERE connection_id = ${connectionId} FOR UPDATE`);
    locked();
    await released;
  });
  return {
    locked: lockedPromise,
    release: async () => {
      release();
      await transaction;
    },
  };
}

const refreshInput = (connectionId: string, state: TokenState): [{ connectionId: string; expectedVersion: number }] => [{ connectionId, expectedVersion: state.tokenVersion }];

/** One activity attempt, as a worker runs it; the environment lets the test cancel it and count its heartbeats. */
function attempt<A extends unknown[], R>(fn: (...args: A) => Promise<R>, args: A, info: Partial<Info> = {}) {
  const environment = new MockActivityEnvironment(info, { logger: new DefaultLogger('ERROR') });
  let heartbeats = 0;
  environment.on('heartbeat', () => (heartbeats += 1));
  const settled: Promise<{ value: R } | { error: unknown }> = (environment.run(fn, ...args) as Promise<R>).then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  return { environment, settled, heartbeats: () => heartbeats };
}

function failureOf(outcome: { value: unknown } | { error: unknown }): ApplicationFailure {
  if (!('error' in outcome)) throw new Error(`the attempt completed with ${JSON.stringify(outcome.value)}, expected a failure`);
  expect(outcome.error).toBeInstanceOf(ApplicationFailure);
  return outcome.error as ApplicationFailure;
}

function valueOf<T>(outcome: { value: T } | { error: unknown }): T {
  if ('error' in outcome) throw outcome.error;
  return outcome.value;
}

const column = (table: string, rowId: string, name: string): FieldBinding => ({ table, column: name, rowId });

async function newConnection(provider: ProviderId) {
  const user = await insertUser(services.db, { email: `${randomUUID()}@example.com`, displayName: 'Lease Test', passwordHash: 'not-a-real-hash' });
  return { userId: user.id, connection: await findOrCreateLiveConnection(services.db, user.id, provider) };
}

async function storeAuthorization(userId: string, connectionId: string, provider: ProviderId, code: string, verifier: string): Promise<string> {
  const authorizationId = randomUUID();
  await insertAuthorization(services.db, {
    id: authorizationId,
    userId,
    provider,
    stateHash: hashBearerValue(randomToken()),
    codeVerifierEnc: services.crypto.encrypt(verifier, column('integration_authorizations', authorizationId, 'code_verifier_enc')),
    redirectUri: redirectUriFor(config.http.publicBaseUrl, provider),
    expiresAt: new Date(Date.now() + 10 * 60 * 1000),
  });
  await attachCodeToAuthorization(services.db, authorizationId, services.crypto.encrypt(code, column('integration_authorizations', authorizationId, 'code_enc')), connectionId);
  return authorizationId;
}

/** A pending Airbnb connection whose authorization holds a fresh code from the fake (Airbnb takes no PKCE). */
async function pendingAirbnbConnection() {
  const { userId, connection } = await newConnection('airbnb');
  airbnb.createHost([]);
  const consent = await fetch(`${airbnb.authorizeUrl}?${new URLSearchParams({ client_id: AIRBNB_TEST_CLIENT.clientId, redirect_uri: 'https://example.com/cb', state: 's' })}`, { redirect: 'manual' });
  const code = new URL(consent.headers.get('location')!).searchParams.get('code')!;
  const authorizationId = await storeAuthorization(userId, connection.id, 'airbnb', code, createPkcePair().verifier);
  return { connectionId: connection.id, authorizationId };
}

async function activeAirbnbConnection(): Promise<{ connectionId: string; state: TokenState }> {
  const pending = await pendingAirbnbConnection();
  const state = valueOf(await attempt(activities.exchangeAuthorizationCode, [pending]).settled);
  return { connectionId: pending.connectionId, state };
}

/** A pending Google connection whose authorization holds a fresh code from the fake. */
async function pendingGoogleConnection() {
  const { userId, connection } = await newConnection('google-calendar');
  const pkce = createPkcePair();
  const redirectUri = redirectUriFor(config.http.publicBaseUrl, 'google-calendar');
  const consent = await fetch(
    `${google.authorizeUrl}?${new URLSearchParams({
      client_id: GOOGLE_TEST_CLIENT.clientId,
      redirect_uri: redirectUri,
      response_type: 'code',
      scope: config.google.scopes.join(' '),
      state: 's',
      code_challenge: pkce.challenge,
      code_challenge_method: 'S256',
      access_type: 'offline',
    })}`,
    { redirect: 'manual' },
  );
  const code = new URL(consent.headers.get('location')!).searchParams.get('code')!;
  const authorizationId = await storeAuthorization(userId, connection.id, 'google-calendar', code, pkce.verifier);
  return { connectionId: connection.id, authorizationId };
}

async function activeGoogleConnection(): Promise<{ connectionId: string; state: TokenState }> {
  const pending = await pendingGoogleConnection();
  const state = valueOf(await attempt(activities.exchangeAuthorizationCode, [pending]).settled);
  return { connectionId: pending.connectionId, state };
}

async function activeMicrosoftConnection(): Promise<{ connectionId: string; state: TokenState }> {
  const { userId, connection } = await newConnection('microsoft-calendar');
  const pkce = createPkcePair();
  const redirectUri = redirectUriFor(config.http.publicBaseUrl, 'microsoft-calendar');
  const consent = await fetch(
    `${microsoft.authorizeUrl}?${new URLSearchParams({
      client_id: MICROSOFT_TEST_CLIENT.clientId,
      redirect_uri: redirectUri,
      response_type: 'code',
      scope: config.microsoft.scopes.join(' '),
      state: 's',
      code_challenge: pkce.challenge,
      code_challenge_method: 'S256',
    })}`,
    { redirect: 'manual' },
  );
  const code = new URL(consent.headers.get('location')!).searchParams.get('code')!;
  const authorizationId = await storeAuthorization(userId, connection.id, 'microsoft-calendar', code, pkce.verifier);
  const state = valueOf(await attempt(activities.exchangeAuthorizationCode, [{ connectionId: connection.id, authorizationId }]).settled);
  return { connectionId: connection.id, state };
}

/** Puts plaintext tokens into the refresh-token columns, encrypted and bound to the row as the activity would. */
async function overwriteRefreshTokens(connectionId: string, tokens: { current: string; previous: string }): Promise<void> {
  const current = services.crypto.encrypt(tokens.current, column('integration_connections', connectionId, 'refresh_token_enc'));
  const previous = services.crypto.encrypt(tokens.previous, column('integration_connections', connectionId, 'previous_refresh_token_enc'));
  await services.db.query(sql.unsafe`UPDATE integration_connections SET refresh_token_enc = ${current}, previous_refresh_token_enc = ${previous} WHERE id = ${connectionId}`);
}

const storedRow = z.object({ status: z.string(), tokenVersion: z.number().int(), refreshTokenEnc: z.string().nullable(), lastErrorKind: z.string().nullable() });

async function stored(connectionId: string) {
  const row = await services.db.one(sql.type(storedRow)`
    SELECT status::text AS status, token_version AS "tokenVersion", refresh_token_enc AS "refreshTokenEnc", last_error_kind AS "lastErrorKind"
    FROM integration_connections WHERE id = ${connectionId}`);
  const refreshToken = row.refreshTokenEnc === null ? null : services.crypto.decrypt(row.refreshTokenEnc, column('integration_connections', connectionId, 'refresh_token_enc'));
  return { status: row.status, tokenVersion: row.tokenVersion, refreshToken, lastErrorKind: row.lastErrorKind };
}

const airbnbTokenCalls = (grant: 'code' | 'refresh') =>
  airbnb.calls.filter((call): call is FakeAirbnbOAuthCall => call.endpoint === 'token' && 'grant' in call && call.grant === grant);

/** Some statement waits for a row lock on the connection's lease: the attempt is about to store, or renew. */
const waitsForLease = (statement: string) =>
  services.db.oneFirst(sql.type(z.object({ waiting: z.boolean() }))`
    SELECT count(*) > 0 AS waiting FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE ${`%${statement}%`}`);

const refreshAudits = (connectionId: string) =>
  services.db.anyFirst(sql.type(z.object({ id: z.number() }))`
    SELECT id::int AS id FROM audit_log WHERE action = 'OAuthTokenRefresh' AND connection_id = ${connectionId}`);

describe('token writes across activity attempts', () => {
  it('two overlapping refresh attempts call Airbnb once: the second waits for the lease, then answers from the database', async () => {
    const { connectionId, state } = await activeAirbnbConnection();
    const before = await stored(connectionId);
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
    const after = await stored(connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: refreshed.tokenVersion, refreshToken: before.refreshToken, lastErrorKind: null });
    expect(airbnb.liveRefreshTokens()).toContain(after.refreshToken);
    expect(await refreshAudits(connectionId)).toHaveLength(1);
  });

  it('heartbeats from the start of the attempt, while it still waits for the database before the lease', async () => {
    const { connectionId, state } = await activeAirbnbConnection();
    // Another transaction holds the lease row: taking the lease waits until it ends.
    const lockRow = lockLeaseRow(connectionId);
    await lockRow.locked;
    const waiting = attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state));
    await eventually(() => waiting.heartbeats() >= 2, 10_000, 'heartbeats while the lease row is locked');
    await lockRow.release();
    expect(valueOf(await waiting.settled).tokenVersion).toBe(state.tokenVersion + 1);
  });

  it('an attempt that lost its lease while Airbnb answered still stores the answer, as nobody stored first; the attempt that took over answers the stored state', async () => {
    const { connectionId, state } = await activeAirbnbConnection();
    const gate = gateAnswers(airbnb.switches);
    const first = attempt(unrenewedActivities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 1 });
    await eventually(() => gate.arrived() === 1, 10_000, 'the first attempt reached Airbnb');
    // The first attempt's renewals were late (its worker busy, the pool slow): its lease lapses and the next attempt takes it over.
    await expireLease(connectionId);
    const second = attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 2 });
    await eventually(() => gate.arrived() === 2, 10_000, 'the second attempt reached Airbnb');

    gate.release(0);
    const stored1 = valueOf(await first.settled);
    expect(stored1.tokenVersion).toBe(state.tokenVersion + 1);
    gate.release(1);
    expect(valueOf(await second.settled)).toEqual(stored1);

    const after = await stored(connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: stored1.tokenVersion, lastErrorKind: null });
    expect(airbnb.liveRefreshTokens()).toContain(after.refreshToken);
    expect(await refreshAudits(connectionId)).toHaveLength(1);
  });

  it('a refusal of the token another attempt rotated away, once that attempt stored its answer, answers the stored state', async () => {
    const { connectionId, state } = await activeGoogleConnection();
    google.switches.rotateRefreshTokens = true;
    const gate = gateAnswers(google.switches);
    const first = attempt(unrenewedActivities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 1 });
    await eventually(() => gate.arrived() === 1, 10_000, 'Google rotated for the first attempt');
    await expireLease(connectionId);
    const second = attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 2 });
    // Google refused the second attempt's token: the first one's call had rotated it away.
    await eventually(() => gate.arrived() === 2, 10_000, 'Google refused the second attempt');

    gate.release(0);
    const rotated = valueOf(await first.settled);
    gate.release(1);
    expect(valueOf(await second.settled)).toEqual(rotated);

    const after = await stored(connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion + 1, lastErrorKind: null });
    expect(google.liveRefreshTokens()).toEqual([after.refreshToken]);
  });

  it('an attempt that finds its lease taken over before its fallback call fails as TokenWriteInProgress and records no provider error', async () => {
    const { connectionId, state } = await activeGoogleConnection();
    const { refreshToken } = await stored(connectionId);
    // A rotation Google never committed: the newest token is unknown upstream, the previous one is live.
    await overwriteRefreshTokens(connectionId, { current: `1//never-committed-${randomUUID()}`, previous: refreshToken! });
    const gate = gateAnswers(google.switches);
    const first = attempt(unrenewedActivities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 1 });
    await eventually(() => gate.arrived() === 1, 10_000, 'Google refused the first attempt');
    await expireLease(connectionId);
    const second = attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 2 });
    await eventually(() => gate.arrived() === 2, 10_000, 'Google refused the second attempt');
    gate.passNew();

    gate.release(0);
    expect(failureOf(await first.settled)).toMatchObject({ type: FailureType.tokenWriteInProgress, nonRetryable: false });
    expect(await stored(connectionId)).toMatchObject({ tokenVersion: state.tokenVersion, lastErrorKind: null });
    gate.release(1);
    expect(valueOf(await second.settled).tokenVersion).toBe(state.tokenVersion + 1);
  });

  it('a cancelled attempt aborts its provider call at once, stores nothing and leaves the lease free', async () => {
    const { connectionId, state } = await activeAirbnbConnection();
    const gate = gateAnswers(airbnb.switches);
    const first = attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 1 });
    await eventually(() => gate.arrived() === 1, 10_000, 'the attempt reached Airbnb');
    first.environment.cancel('TIMED_OUT');

    const outcome = await first.settled;
    expect('error' in outcome && outcome.error).toBeInstanceOf(CancelledFailure);
    expect(await stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion });
    gate.passNew();
    const next = valueOf(await attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 2 }).settled);
    expect(next.tokenVersion).toBe(state.tokenVersion + 1);
  });

  it('when a rotation was answered into a dead attempt and no token we hold works, needs_reauth says so: refresh_token_lost_in_flight', async () => {
    const { connectionId, state } = await activeMicrosoftConnection();
    const gate = gateAnswers(microsoft.switches);
    const first = attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 1 });
    // Microsoft rotated (the token presented is dead at once here), but its answer is held.
    await eventually(() => gate.arrived() === 1, 10_000, 'Microsoft rotated the refresh token');
    first.environment.cancel('TIMED_OUT');
    expect('error' in (await first.settled)).toBe(true);
    gate.passNew();

    const second = failureOf(await attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 2 }).settled);

    expect(second).toMatchObject({ type: FailureType.refreshTokenLostInFlight, nonRetryable: true });
    expect(await stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion, lastErrorKind: REFRESH_TOKEN_LOST_IN_FLIGHT });
  });

  it('a provider that does not rotate refusing after an unanswered call was revoked, not lost in flight: GrantRevoked', async () => {
    const { connectionId, state } = await activeGoogleConnection();
    const gate = gateAnswers(google.switches);
    const first = attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 1 });
    await eventually(() => gate.arrived() === 1, 10_000, 'the first attempt reached Google');
    first.environment.cancel('TIMED_OUT');
    expect('error' in (await first.settled)).toBe(true);
    gate.passNew();
    // The user revoked our access meanwhile.
    google.revokeAllGrants();

    const second = failureOf(await attempt(activities.refreshConnectionTokens, refreshInput(connectionId, state), { attempt: 2 }).settled);

    expect(second).toMatchObject({ type: FailureType.grantRevoked, nonRetryable: true });
    expect(await stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion, lastErrorKind: 'invalid_grant' });
  });

  it('two overlapping code exchanges spend the code once; the second answers from the database', async () => {
    const pending = await pendingAirbnbConnection();
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
    expect(await stored(pending.connectionId)).toMatchObject({ status: 'active', tokenVersion: exchanged.tokenVersion });
  });

  it('an exchange whose lease is taken over while Google answers stores what it obtained, as nobody stored first', async () => {
    const pending = await pendingGoogleConnection();
    const liveBefore = new Set(google.liveRefreshTokens());
    const gate = gateAnswers(google.switches);
    const first = attempt(unrenewedActivities.exchangeAuthorizationCode, [pending], { attempt: 1 });
    await eventually(() => gate.arrived() === 1, 10_000, 'Google issued tokens for the first attempt');
    // The next attempt takes the lease over; its transaction keeps the row until the first attempt has Google's answer and waits to store it.
    const nextAttempt = new pg.Client({ connectionString: database.url });
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
    const after = await stored(pending.connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: exchanged.tokenVersion, lastErrorKind: null });
    expect(exchanged.tokenVersion).toBe(1);
    // The compare-and-set let this answer stand: what Google issued is the connection's, never live and nobody's.
    expect(google.liveRefreshTokens().filter((token) => !liveBefore.has(token))).toEqual([after.refreshToken]);
  });
});
