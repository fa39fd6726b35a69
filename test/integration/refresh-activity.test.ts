import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createActivities, type Activities, type TokenState } from '../../activities';
import { FailureType, NON_RETRYABLE_FAILURES } from '../../activities/failure-types';
import { migrate } from '../../db/migrate';
import { insertAuthorization, attachCodeToAuthorization } from '../../db/queries/authorizations';
import { findOrCreateLiveConnection, recordConnectionError } from '../../db/queries/connections';
import { insertUser } from '../../db/queries/users';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { loadConfig, type Config } from '../../platform/config';
import { generateEncryptionKey, type FieldBinding } from '../../platform/integration-crypto';
import { createPkcePair } from '../../platform/pkce';
import { createSsoSessionSync } from '../../platform/sso/backchannel-delivery';
import { redirectUriFor } from '../../platform/providers/provider';
import { hashBearerValue, randomToken } from '../../platform/secrets';
import { createPlatformServices, type PlatformServices } from '../../platform/services';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { eventually } from '../helpers/eventually';
import { GOOGLE_TEST_CLIENT } from '../helpers/platform';

/**
 * The refresh activity on its own (design invariants 2-4): real Postgres, the fake Google over HTTP,
 * and Temporal's MockActivityEnvironment, so the ApplicationFailure a workflow would see can be checked.
 */

const PROVIDER = 'google-calendar';

let database: TestDatabase;
let google: FakeGoogle;
let config: Config;
let services: PlatformServices;
let activities: Activities;

beforeAll(async () => {
  database = await createTestDatabase(inject('databaseUrl'));
  await migrate(database.url);
  google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
  config = loadConfig({
    APP_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATABASE_URL: database.url,
    INTEGRATION_ENCRYPTION_KEY: generateEncryptionKey(),
    GOOGLE_CLIENT_ID: GOOGLE_TEST_CLIENT.clientId,
    GOOGLE_CLIENT_SECRET: GOOGLE_TEST_CLIENT.clientSecret,
    GOOGLE_AUTHORIZE_URL: google.authorizeUrl,
    GOOGLE_TOKEN_URL: google.tokenUrl,
    GOOGLE_REVOKE_URL: google.revokeUrl,
  });
  services = await createPlatformServices(config);
  activities = createActivities({ ...services, sso: createSsoSessionSync(config, services), clock: () => new Date() });
});

afterAll(async () => {
  await services?.db.end();
  await google?.close();
  await database?.drop();
});

// Every case starts from a quiet fake whose earlier grants are all dead, so what is live is this case's.
beforeEach(() => {
  google.reset();
  google.revokeAllGrants();
});

const openGates: Array<() => void> = [];
afterEach(() => openGates.splice(0).forEach((release) => release()));

// ---------------------------------------------------------------------------------------------
// Helpers

/** Runs an activity as a worker would, with warnings about expected failures kept out of the output. */
function runActivity<A extends unknown[], R>(fn: (...args: A) => Promise<R>, args: A, info: Partial<Info> = {}): Promise<R> {
  return new MockActivityEnvironment(info, { logger: new DefaultLogger('ERROR') }).run(fn, ...args);
}

function refresh(connectionId: string, expectedVersion: number, info: Partial<Info> = {}): Promise<TokenState> {
  return runActivity(activities.refreshConnectionTokens, [{ connectionId, expectedVersion }], info);
}

/** The ApplicationFailure the activity threw (fails the test when it completed or threw something else). */
async function failureOf(run: Promise<unknown>): Promise<ApplicationFailure> {
  const outcome = await run.then(
    (value: unknown) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in outcome)) throw new Error(`activity completed with ${JSON.stringify(outcome.value)}, expected a failure`);
  expect(outcome.error).toBeInstanceOf(ApplicationFailure);
  return outcome.error as ApplicationFailure;
}

function expectFinal(failure: ApplicationFailure, type: string): void {
  expect(failure.type).toBe(type);
  expect(failure.nonRetryable).toBe(true);
  expect(NON_RETRYABLE_FAILURES).toContain(type);
}

function expectRetryable(failure: ApplicationFailure, type: string): void {
  expect(failure.type).toBe(type);
  expect(failure.nonRetryable).toBe(false);
  // The workflow's retry policy lists non-retryable types; a retryable failure must not be among them.
  expect(NON_RETRYABLE_FAILURES).not.toContain(type);
}

const connectionColumn = (rowId: string, column: string): FieldBinding => ({ table: 'integration_connections', column, rowId });
const authorizationColumn = (rowId: string, column: string): FieldBinding => ({ table: 'integration_authorizations', column, rowId });

const storedRow = z.object({
  status: z.string(),
  tokenVersion: z.number().int(),
  accessTokenEnc: z.string().nullable(),
  refreshTokenEnc: z.string().nullable(),
  previousRefreshTokenEnc: z.string().nullable(),
  accessTokenExpiresAt: z.number().nullable(),
  lastErrorKind: z.string().nullable(),
  lastErrorMessage: z.string().nullable(),
  lastErrorAt: z.number().nullable(),
});

/** The connection's columns, token columns decrypted. */
async function readStored(connectionId: string) {
  const row = await services.db.one(sql.type(storedRow)`
    SELECT status::text AS status, token_version AS "tokenVersion", access_token_enc AS "accessTokenEnc",
           refresh_token_enc AS "refreshTokenEnc", previous_refresh_token_enc AS "previousRefreshTokenEnc",
           access_token_expires_at AS "accessTokenExpiresAt", last_error_kind AS "lastErrorKind",
           last_error_message AS "lastErrorMessage", last_error_at AS "lastErrorAt"
    FROM integration_connections WHERE id = ${connectionId}`);
  const open = (envelope: string | null, column: string) =>
    envelope === null ? null : services.crypto.decrypt(envelope, connectionColumn(connectionId, column));
  return {
    status: row.status,
    tokenVersion: row.tokenVersion,
    accessToken: open(row.accessTokenEnc, 'access_token_enc'),
    refreshToken: open(row.refreshTokenEnc, 'refresh_token_enc'),
    previousRefreshToken: open(row.previousRefreshTokenEnc, 'previous_refresh_token_enc'),
    accessTokenExpiresAt: row.accessTokenExpiresAt,
    lastErrorKind: row.lastErrorKind,
    lastErrorMessage: row.lastErrorMessage,
    lastErrorAt: row.lastErrorAt,
  };
}

/** Puts plaintext tokens into the refresh-token columns, encrypted and bound to the row as the activity would. */
async function overwriteRefreshTokens(connectionId: string, tokens: { current: string; previous: string | null }): Promise<void> {
  const current = services.crypto.encrypt(tokens.current, connectionColumn(connectionId, 'refresh_token_enc'));
  const previous =
    tokens.previous === null ? null : services.crypto.encrypt(tokens.previous, connectionColumn(connectionId, 'previous_refresh_token_enc'));
  await services.db.query(sql.unsafe`
    UPDATE integration_connections SET refresh_token_enc = ${current}, previous_refresh_token_enc = ${previous}
    WHERE id = ${connectionId}`);
}

/** Refresh-grant requests the fake has answered since the last reset. */
function refreshCalls() {
  return google.calls.filter((call) => call.endpoint === 'token' && call.grantType === 'refresh_token');
}

const auditRow = z.object({
  outcome: z.string(),
  details: z.object({ tokenVersion: z.number(), rotated: z.boolean(), fellBackToPreviousGrant: z.boolean() }).passthrough(),
});

async function refreshAuditRows(connectionId: string) {
  return services.db.any(sql.type(auditRow)`
    SELECT outcome, details FROM audit_log
    WHERE action = 'OAuthTokenRefresh' AND connection_id = ${connectionId}
    ORDER BY id`);
}

/** What a browser and our callback do, without the API: consent at the fake, then a pending authorization holding the code. */
async function authorizeAtFake(userId: string, connectionId: string): Promise<string> {
  const state = randomToken();
  const pkce = createPkcePair();
  const redirectUri = redirectUriFor(config.http.publicBaseUrl, PROVIDER);
  const authorize = new URL(google.authorizeUrl);
  authorize.search = new URLSearchParams({
    client_id: GOOGLE_TEST_CLIENT.clientId,
    redirect_uri: redirectUri,
    response_type: 'code',
    scope: config.google.scopes.join(' '),
    state,
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
    access_type: 'offline',
  }).toString();
  const consent = await fetch(authorize, { redirect: 'manual' });
  expect(consent.status).toBe(302);
  const callback = new URL(consent.headers.get('location')!);
  expect(callback.searchParams.get('state')).toBe(state);
  const code = callback.searchParams.get('code');
  expect(code).toBeTruthy();

  const authorizationId = randomUUID();
  await insertAuthorization(services.db, {
    id: authorizationId,
    userId,
    provider: PROVIDER,
    stateHash: hashBearerValue(state),
    codeVerifierEnc: services.crypto.encrypt(pkce.verifier, authorizationColumn(authorizationId, 'code_verifier_enc')),
    redirectUri,
    expiresAt: new Date(Date.now() + 10 * 60 * 1000),
  });
  await attachCodeToAuthorization(
    services.db,
    authorizationId,
    services.crypto.encrypt(code!, authorizationColumn(authorizationId, 'code_enc')),
    connectionId,
  );
  return authorizationId;
}

interface Seeded {
  connectionId: string;
  /** Version and expiry after the code exchange. */
  state: TokenState;
  accessToken: string;
  refreshToken: string;
}

/** A new user with an active Google Calendar connection whose tokens came from a real code exchange at the fake. */
async function seedActiveConnection(): Promise<Seeded> {
  const user = await insertUser(services.db, {
    email: `${randomUUID()}@example.com`,
    displayName: 'Refresh Test',
    passwordHash: 'not-a-real-hash',
  });
  const connection = await findOrCreateLiveConnection(services.db, user.id, PROVIDER);
  expect(connection.status).toBe('pending');
  const authorizationId = await authorizeAtFake(user.id, connection.id);
  const state = await runActivity(activities.exchangeAuthorizationCode, [{ connectionId: connection.id, authorizationId }]);

  const stored = await readStored(connection.id);
  expect(stored).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion, previousRefreshToken: null });
  expect(stored.refreshToken).toBeTruthy();
  expect(google.liveRefreshTokens()).toEqual([stored.refreshToken]);
  // The seeding's own calls (authorize, code exchange) are not what the cases count.
  google.calls.length = 0;
  return { connectionId: connection.id, state, accessToken: stored.accessToken!, refreshToken: stored.refreshToken! };
}

/** Brackets a call with wall-clock readings, to check the expiry the activity computed. */
async function timed<T>(run: () => Promise<T>): Promise<{ result: T; before: number; after: number }> {
  const before = Date.now();
  const result = await run();
  return { result, before, after: Date.now() };
}

/** Holds Google's token answers (after it acted) until the test releases them. */
function gateGoogleAnswers() {
  const held: Array<() => void> = [];
  google.switches.holdAnswer = () =>
    new Promise<void>((resolve) => {
      held.push(resolve);
      openGates.push(resolve);
    });
  return { arrived: () => held.length, releaseAll: () => held.forEach((release) => release()) };
}

/** Distinct transactions of ours seen waiting for a row lock on the lease row (the store locks it first). */
async function storeLockWaits(seen: Set<string>): Promise<number> {
  const waiting = await services.db.anyFirst(sql.type(z.object({ started: z.string() }))`
    SELECT xact_start::text AS started FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%SELECT holder FROM integration_token_leases%'`);
  for (const started of waiting) seen.add(started);
  return seen.size;
}

// The fake's default access token lifetime.
const ACCESS_TOKEN_LIFETIME_MS = 3599 * 1000;

// ---------------------------------------------------------------------------------------------

describe('refreshConnectionTokens activity', () => {
  it('stores the new tokens before completing, and a retry after a lost completion answers from the database without calling Google', async () => {
    const seeded = await seedActiveConnection();
    const v = seeded.state.tokenVersion;

    const { result: first, before, after } = await timed(() => refresh(seeded.connectionId, v));
    expect(first.tokenVersion).toBe(v + 1);
    expect(first.accessTokenExpiresAt).toBeGreaterThanOrEqual(before + ACCESS_TOKEN_LIFETIME_MS);
    expect(first.accessTokenExpiresAt).toBeLessThanOrEqual(after + ACCESS_TOKEN_LIFETIME_MS);
    expect(refreshCalls()).toHaveLength(1);

    const afterFirst = await readStored(seeded.connectionId);
    expect(afterFirst.tokenVersion).toBe(v + 1);
    expect(afterFirst.accessTokenExpiresAt).toBe(first.accessTokenExpiresAt);
    expect(afterFirst.accessToken).not.toBe(seeded.accessToken);
    expect(google.issuedSecrets()).toContain(afterFirst.accessToken);

    // Temporal retries with the same input when the completion was lost (worker killed, timeout).
    const retried = await refresh(seeded.connectionId, v, { attempt: 2 });
    expect(retried).toEqual(first);
    expect(refreshCalls()).toHaveLength(1);
    expect(await readStored(seeded.connectionId)).toEqual(afterFirst);
    expect(await refreshAuditRows(seeded.connectionId)).toHaveLength(1);
  });

  it('a failure reported late, for a version already superseded, does not paint over the good state', async () => {
    const seeded = await seedActiveConnection();
    const v = seeded.state.tokenVersion;
    await refresh(seeded.connectionId, v);
    await recordConnectionError(services.db, { connectionId: seeded.connectionId, tokenVersion: v, kind: 'transient', message: 'late', at: new Date() });
    expect(await readStored(seeded.connectionId)).toMatchObject({ tokenVersion: v + 1, lastErrorKind: null, lastErrorMessage: null });

    await recordConnectionError(services.db, { connectionId: seeded.connectionId, tokenVersion: v + 1, kind: 'transient', message: 'current', at: new Date() });
    expect(await readStored(seeded.connectionId)).toMatchObject({ lastErrorKind: 'transient', lastErrorMessage: 'current' });
  });

  it('keeps the stored refresh token when Google answers without one (its default), and keeps no previous token', async () => {
    const seeded = await seedActiveConnection();

    const result = await refresh(seeded.connectionId, seeded.state.tokenVersion);

    const stored = await readStored(seeded.connectionId);
    expect(stored.tokenVersion).toBe(result.tokenVersion);
    expect(stored.refreshToken).toBe(seeded.refreshToken);
    expect(stored.previousRefreshToken).toBeNull();
    expect(stored.accessToken).not.toBe(seeded.accessToken);
    expect(google.liveRefreshTokens()).toEqual([seeded.refreshToken]);
    expect(refreshCalls()).toEqual([expect.objectContaining({ status: 200 })]);
  });

  it('stores a rotated refresh token, keeps the one it used until the new one has worked once', async () => {
    const seeded = await seedActiveConnection();

    google.switches.rotateRefreshTokens = true;
    const rotated = await refresh(seeded.connectionId, seeded.state.tokenVersion);

    const afterRotation = await readStored(seeded.connectionId);
    expect(afterRotation.tokenVersion).toBe(rotated.tokenVersion);
    expect(afterRotation.refreshToken).not.toBe(seeded.refreshToken);
    expect(google.liveRefreshTokens()).toEqual([afterRotation.refreshToken]);
    expect(afterRotation.previousRefreshToken).toBe(seeded.refreshToken);

    google.switches.rotateRefreshTokens = false;
    const confirmed = await refresh(seeded.connectionId, rotated.tokenVersion);

    const afterConfirmation = await readStored(seeded.connectionId);
    expect(afterConfirmation.tokenVersion).toBe(confirmed.tokenVersion);
    expect(confirmed.tokenVersion).toBe(rotated.tokenVersion + 1);
    expect(afterConfirmation.refreshToken).toBe(afterRotation.refreshToken);
    expect(afterConfirmation.previousRefreshToken).toBeNull();
    expect(refreshCalls().map((call) => call.status)).toEqual([200, 200]);
    expect((await refreshAuditRows(seeded.connectionId)).map((row) => row.details.rotated)).toEqual([true, false]);
  });

  it('falls back to the previous refresh token when a rotated one was never committed by the provider', async () => {
    // The fake retires a refresh token as soon as it rotates it (see the next case), so the state a lost
    // rotation leaves behind is written directly: the newest token is unknown upstream, the previous is live.
    const seeded = await seedActiveConnection();
    const uncommitted = `1//never-committed-${randomUUID()}`;
    await overwriteRefreshTokens(seeded.connectionId, { current: uncommitted, previous: seeded.refreshToken });

    const result = await refresh(seeded.connectionId, seeded.state.tokenVersion);

    expect(result.tokenVersion).toBe(seeded.state.tokenVersion + 1);
    expect(refreshCalls().map((call) => [call.status, call.error])).toEqual([
      [400, 'invalid_grant'],
      [200, undefined],
    ]);
    const stored = await readStored(seeded.connectionId);
    expect(stored).toMatchObject({
      tokenVersion: result.tokenVersion,
      refreshToken: seeded.refreshToken,
      previousRefreshToken: null,
      lastErrorKind: null,
    });
    expect(stored.accessToken).not.toBe(seeded.accessToken);
    const audits = await refreshAuditRows(seeded.connectionId);
    expect(audits).toHaveLength(1);
    expect(audits[0]!.details).toMatchObject({ tokenVersion: result.tokenVersion, rotated: false, fellBackToPreviousGrant: true });
  });

  it('fails for good when a rotation did happen upstream and the newest token fails: the fake has retired the previous one', async () => {
    const seeded = await seedActiveConnection();
    google.switches.rotateRefreshTokens = true;
    const rotated = await refresh(seeded.connectionId, seeded.state.tokenVersion);
    google.switches.rotateRefreshTokens = false;
    // The fake retires a rotated-away token at once, so after a real rotation there is nothing to fall back to.
    expect(google.liveRefreshTokens()).not.toContain(seeded.refreshToken);

    await overwriteRefreshTokens(seeded.connectionId, { current: `1//bogus-${randomUUID()}`, previous: seeded.refreshToken });
    const before = await readStored(seeded.connectionId);
    google.calls.length = 0;

    const failure = await failureOf(refresh(seeded.connectionId, rotated.tokenVersion));

    expectFinal(failure, FailureType.grantRevoked);
    expect(refreshCalls().map((call) => call.error)).toEqual(['invalid_grant', 'invalid_grant']);
    const after = await readStored(seeded.connectionId);
    expect(after.lastErrorKind).toBe('invalid_grant');
    expect(after).toMatchObject({
      tokenVersion: before.tokenVersion,
      accessToken: before.accessToken,
      refreshToken: before.refreshToken,
      previousRefreshToken: seeded.refreshToken,
    });
  });

  it('turns invalid_grant into a non-retryable GrantRevoked and changes no token', async () => {
    const seeded = await seedActiveConnection();
    const before = await readStored(seeded.connectionId);

    google.switches.invalidGrant = true;
    const failure = await failureOf(refresh(seeded.connectionId, seeded.state.tokenVersion));

    expectFinal(failure, FailureType.grantRevoked);
    expect(failure.message).not.toContain(seeded.refreshToken);
    expect(refreshCalls()).toEqual([expect.objectContaining({ status: 400, error: 'invalid_grant' })]);
    const after = await readStored(seeded.connectionId);
    expect(after.lastErrorKind).toBe('invalid_grant');
    expect(after.lastErrorAt).not.toBeNull();
    // Moving to needs_reauth is the workflow's next step (markConnectionNeedsReauth), not this activity's.
    expect(after).toMatchObject({
      tokenVersion: before.tokenVersion,
      accessToken: before.accessToken,
      refreshToken: before.refreshToken,
      previousRefreshToken: null,
      accessTokenExpiresAt: before.accessTokenExpiresAt,
    });
    expect(await refreshAuditRows(seeded.connectionId)).toHaveLength(0);
  });

  it.each([503, 429])('turns a %i into a retryable ProviderUnavailable, and the next attempt succeeds and clears the error', async (status) => {
    const seeded = await seedActiveConnection();
    const before = await readStored(seeded.connectionId);

    google.switches.failNext(1, status);
    const failure = await failureOf(refresh(seeded.connectionId, seeded.state.tokenVersion));

    expectRetryable(failure, FailureType.providerUnavailable);
    const failed = await readStored(seeded.connectionId);
    expect(failed.lastErrorKind).toBe('transient');
    expect(failed.lastErrorMessage).toContain(String(status));
    expect(failed).toMatchObject({ tokenVersion: before.tokenVersion, accessToken: before.accessToken, refreshToken: before.refreshToken });

    const result = await refresh(seeded.connectionId, seeded.state.tokenVersion, { attempt: 2 });

    expect(result.tokenVersion).toBe(seeded.state.tokenVersion + 1);
    expect(refreshCalls().map((call) => call.status)).toEqual([status, 200]);
    expect(await readStored(seeded.connectionId)).toMatchObject({
      tokenVersion: result.tokenVersion,
      lastErrorKind: null,
      lastErrorMessage: null,
      lastErrorAt: null,
    });
  });

  it('stores what Google answered despite a database fault at the store: the store runs again while the attempt lives', async () => {
    const seeded = await seedActiveConnection();
    google.switches.rotateRefreshTokens = true;
    const gate = gateGoogleAnswers();
    const running = refresh(seeded.connectionId, seeded.state.tokenVersion, { startToCloseTimeoutMs: 60_000, currentAttemptScheduledTimestampMs: Date.now() });
    await eventually(() => gate.arrived() === 1, 10_000, 'Google rotated the refresh token');

    // Another transaction holds the lease row: the store's first try runs into this pool's lock timeout (a transient fault).
    let release!: () => void;
    const seen = new Set<string>();
    const blocking = services.db.transaction(async (transaction) => {
      await transaction.query(sql.unsafe`SELECT 1 FROM integration_token_leases WHERE connection_id = ${seeded.connectionId} FOR UPDATE`);
      await new Promise<void>((resolve) => (release = resolve));
    });
    await eventually(() => release !== undefined, 10_000, 'the lease row is locked');
    gate.releaseAll();
    await eventually(async () => (await storeLockWaits(seen)) >= 2, 20_000, 'the store waited for the lock a second time');
    release();
    await blocking;

    const result = await running;
    expect(result.tokenVersion).toBe(seeded.state.tokenVersion + 1);
    const stored = await readStored(seeded.connectionId);
    expect(stored).toMatchObject({ tokenVersion: result.tokenVersion, previousRefreshToken: seeded.refreshToken, lastErrorKind: null });
    expect(google.liveRefreshTokens()).toEqual([stored.refreshToken]);
  });

  it('provider work refuses a stored access token that has expired (an attempt retried long after the workflow checked it): AccessTokenExpired, nobody called', async () => {
    const seeded = await seedActiveConnection();
    await services.db.query(sql.unsafe`UPDATE integration_connections SET access_token_expires_at = now() - interval '1 minute' WHERE id = ${seeded.connectionId}`);

    const failure = await failureOf(runActivity(activities.syncConnection, [{ connectionId: seeded.connectionId, reason: 'scheduled', full: false }]));

    expectFinal(failure, FailureType.accessTokenExpired);
    expect(google.calls).toEqual([]);
    const runs = await services.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM sync_runs WHERE connection_id = ${seeded.connectionId}`);
    expect(runs).toBe(0);
  });

  it('refuses a disconnected connection with a non-retryable ConnectionGone and calls nobody', async () => {
    const seeded = await seedActiveConnection();
    await services.db.query(sql.unsafe`UPDATE integration_connections SET status = 'disconnected' WHERE id = ${seeded.connectionId}`);
    const before = await readStored(seeded.connectionId);

    const failure = await failureOf(refresh(seeded.connectionId, seeded.state.tokenVersion));

    expectFinal(failure, FailureType.connectionGone);
    expect(google.calls).toEqual([]);
    expect(await readStored(seeded.connectionId)).toEqual(before);
  });

  it('audits each successful refresh exactly once, and no audit row or error message holds a token Google issued', async () => {
    const seeded = await seedActiveConnection();
    const versions: number[] = [];

    const plain = await refresh(seeded.connectionId, seeded.state.tokenVersion);
    versions.push(plain.tokenVersion);
    // A retry of an attempt whose completion was lost: no second row.
    await refresh(seeded.connectionId, seeded.state.tokenVersion, { attempt: 2 });

    google.switches.rotateRefreshTokens = true;
    const rotated = await refresh(seeded.connectionId, plain.tokenVersion);
    versions.push(rotated.tokenVersion);
    google.switches.rotateRefreshTokens = false;

    // Failures are not refreshes.
    google.switches.failNext(1, 503);
    await failureOf(refresh(seeded.connectionId, rotated.tokenVersion));
    const confirmed = await refresh(seeded.connectionId, rotated.tokenVersion);
    versions.push(confirmed.tokenVersion);
    google.switches.invalidGrant = true;
    await failureOf(refresh(seeded.connectionId, confirmed.tokenVersion));
    google.switches.invalidGrant = false;

    const rows = await refreshAuditRows(seeded.connectionId);
    expect(rows.map((row) => row.outcome)).toEqual(['success', 'success', 'success']);
    expect(rows.map((row) => row.details.tokenVersion)).toEqual(versions);
    expect(rows.map((row) => row.details.rotated)).toEqual([false, true, false]);
    expect(rows.map((row) => row.details.fellBackToPreviousGrant)).toEqual([false, false, false]);

    // Every audit row in the database, whichever case wrote it, against every secret the fake ever issued.
    const secrets = google.issuedSecrets();
    const stored = await readStored(seeded.connectionId);
    expect(secrets).toEqual(expect.arrayContaining([stored.accessToken, stored.refreshToken, seeded.refreshToken]));
    const auditTexts = await services.db.anyFirst(sql.type(z.object({ text: z.string() }))`SELECT details::text AS text FROM audit_log`);
    const rowTexts = await services.db.anyFirst(sql.type(z.object({ text: z.string() }))`SELECT a::text AS text FROM audit_log a`);
    const errorMessages = await services.db.anyFirst(sql.type(z.object({ text: z.string() }))`
      SELECT last_error_message AS text FROM integration_connections WHERE last_error_message IS NOT NULL`);
    expect(auditTexts.length).toBeGreaterThan(0);
    expect(errorMessages.length).toBeGreaterThan(0);
    for (const text of [...auditTexts, ...rowTexts, ...errorMessages]) {
      for (const secret of secrets) expect(text).not.toContain(secret);
    }
  });
});
