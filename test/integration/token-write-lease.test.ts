import { randomUUID } from 'node:crypto';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createActivities, type Activities, type TokenState } from '../../activities';
import { FailureType, REFRESH_TOKEN_LOST_IN_FLIGHT } from '../../activities/failure-types';
import { migrate } from '../../db/migrate';
import { attachCodeToAuthorization, insertAuthorization } from '../../db/queries/authorizations';
import { findOrCreateLiveConnection } from '../../db/queries/connections';
import { insertUser } from '../../db/queries/users';
import { startFakeAirbnb, type FakeAirbnb, type FakeAirbnbOAuthCall } from '../../fakes/airbnb';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
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
import { fakeGoogleEnvironment, GOOGLE_TEST_CLIENT } from '../helpers/platform';

/**
 * One writer of a connection's tokens across activity attempts (issue 11, defect 1): Temporal starts
 * the next attempt when one times out, not when it has stopped. Two attempts run here side by side,
 * as a worker would run them, against the fake providers over HTTP and a real Postgres.
 */

/** Long enough for a second attempt to start while the first one's provider call is outstanding. */
const SLOW_PROVIDER_MS = 2500;

let database: TestDatabase;
let airbnb: FakeAirbnb;
let google: FakeGoogle;
let config: Config;
let services: PlatformServices;
let activities: Activities;

beforeAll(async () => {
  database = await createTestDatabase(inject('databaseUrl'));
  await migrate(database.url);
  // Airbnb's grace for a rotated-away refresh token is unknown: here it has none, the worst case.
  airbnb = await startFakeAirbnb({ ...AIRBNB_TEST_CLIENT, rotationGraceSeconds: 0 });
  google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
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
  });
  services = await createPlatformServices(config);
  activities = createActivities({ ...services, sso: createSsoSessionSync(config, services), clock: () => new Date() });
});

afterAll(async () => {
  await services?.db.end();
  await airbnb?.close();
  await google?.close();
  await database?.drop();
});

beforeEach(() => {
  airbnb.switches.delayMs = 0;
  google.reset();
});

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

async function activeGoogleConnection(): Promise<{ connectionId: string; state: TokenState }> {
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
  const state = valueOf(await attempt(activities.exchangeAuthorizationCode, [{ connectionId: connection.id, authorizationId }]).settled);
  return { connectionId: connection.id, state };
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

const refreshAudits = (connectionId: string) =>
  services.db.anyFirst(sql.type(z.object({ id: z.number() }))`
    SELECT id::int AS id FROM audit_log WHERE action = 'OAuthTokenRefresh' AND connection_id = ${connectionId}`);

describe('token writes across activity attempts', () => {
  it('two overlapping refresh attempts call Airbnb once: the second waits for the lease, then answers from the database', async () => {
    const { connectionId, state } = await activeAirbnbConnection();
    const before = await stored(connectionId);
    const refreshesBefore = airbnbTokenCalls('refresh').length;
    airbnb.switches.delayMs = SLOW_PROVIDER_MS;

    const first = attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 1 });
    await eventually(() => airbnbTokenCalls('refresh').length > refreshesBefore, 10_000, 'the first attempt reached Airbnb');
    // Temporal gave up on the first attempt (no answer within its timeout) and starts the next one.
    const second = failureOf(await attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 2 }).settled);
    expect(second).toMatchObject({ type: FailureType.tokenWriteInProgress, nonRetryable: false });

    const refreshed = valueOf(await first.settled);
    expect(refreshed.tokenVersion).toBe(state.tokenVersion + 1);
    expect(first.heartbeats()).toBeGreaterThanOrEqual(2); // it heartbeat while Airbnb was slow
    airbnb.switches.delayMs = 0;
    const third = valueOf(await attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 3 }).settled);
    expect(third).toEqual(refreshed);

    const calls = airbnbTokenCalls('refresh').slice(refreshesBefore);
    expect(calls).toEqual([expect.objectContaining({ status: 200, rotated: false })]);
    const after = await stored(connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: refreshed.tokenVersion, refreshToken: before.refreshToken, lastErrorKind: null });
    expect(airbnb.liveRefreshTokens()).toContain(after.refreshToken);
    expect(await refreshAudits(connectionId)).toHaveLength(1);
  });

  it('an attempt whose lease was taken over does not store what the provider answered', async () => {
    const { connectionId, state } = await activeAirbnbConnection();
    airbnb.switches.delayMs = SLOW_PROVIDER_MS;
    const refreshesBefore = airbnbTokenCalls('refresh').length;
    const first = attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 1 });
    await eventually(() => airbnbTokenCalls('refresh').length > refreshesBefore, 10_000, 'the first attempt reached Airbnb');
    // The first attempt's worker looks dead: its lease lapses and the next attempt takes it over.
    await services.db.query(sql.unsafe`UPDATE integration_token_leases SET expires_at = now() - interval '1 second' WHERE connection_id = ${connectionId}`);
    airbnb.switches.delayMs = 0;
    const second = valueOf(await attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 2 }).settled);

    expect(failureOf(await first.settled)).toMatchObject({ type: FailureType.tokenWriteInProgress, nonRetryable: false });
    expect(await stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: second.tokenVersion });
    expect(await refreshAudits(connectionId)).toHaveLength(1);
  });

  it('a cancelled attempt aborts its provider call at once, stores nothing and leaves the lease free', async () => {
    const { connectionId, state } = await activeAirbnbConnection();
    airbnb.switches.delayMs = 8000;
    const refreshesBefore = airbnbTokenCalls('refresh').length;
    const first = attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 1 });
    await eventually(() => airbnbTokenCalls('refresh').length > refreshesBefore, 10_000, 'the attempt reached Airbnb');
    first.environment.cancel('TIMED_OUT');

    const outcome = await first.settled;
    expect('error' in outcome && outcome.error).toBeInstanceOf(CancelledFailure);
    expect(await stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion });
    airbnb.switches.delayMs = 0;
    const next = valueOf(await attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 2 }).settled);
    expect(next.tokenVersion).toBe(state.tokenVersion + 1);
  });

  it('when a rotation was answered into a dead attempt and no token we hold works, needs_reauth says so: refresh_token_lost_in_flight', async () => {
    const { connectionId, state } = await activeGoogleConnection();
    const { refreshToken } = await stored(connectionId);
    google.switches.rotateRefreshTokens = true;
    // Google rotates (and here retires the old token at once), but its answer takes long to come back.
    google.switches.delayMs = 8000;
    const first = attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 1 });
    await eventually(() => !google.liveRefreshTokens().includes(refreshToken!), 10_000, 'Google rotated the refresh token');
    first.environment.cancel('TIMED_OUT');
    expect('error' in (await first.settled)).toBe(true);
    google.switches.delayMs = 0;

    const second = failureOf(await attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 2 }).settled);

    expect(second).toMatchObject({ type: FailureType.refreshTokenLostInFlight, nonRetryable: true });
    expect(await stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion, lastErrorKind: REFRESH_TOKEN_LOST_IN_FLIGHT });
  });

  it('two overlapping code exchanges spend the code once; the second answers from the database', async () => {
    const pending = await pendingAirbnbConnection();
    const codesBefore = airbnbTokenCalls('code').length;
    airbnb.switches.delayMs = SLOW_PROVIDER_MS;

    const first = attempt(activities.exchangeAuthorizationCode, [pending], { attempt: 1 });
    await eventually(() => airbnbTokenCalls('code').length > codesBefore, 10_000, 'the first attempt reached Airbnb');
    const second = failureOf(await attempt(activities.exchangeAuthorizationCode, [pending], { attempt: 2 }).settled);
    expect(second).toMatchObject({ type: FailureType.tokenWriteInProgress, nonRetryable: false });

    const exchanged = valueOf(await first.settled);
    airbnb.switches.delayMs = 0;
    expect(valueOf(await attempt(activities.exchangeAuthorizationCode, [pending], { attempt: 3 }).settled)).toEqual(exchanged);
    expect(airbnbTokenCalls('code').slice(codesBefore)).toEqual([expect.objectContaining({ status: 200 })]);
    expect(await stored(pending.connectionId)).toMatchObject({ status: 'active', tokenVersion: exchanged.tokenVersion });
  });
});
