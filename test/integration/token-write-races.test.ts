import { randomUUID } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApplicationFailure, type Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createActivities, type Activities, type TokenState } from '../../activities';
import { FailureType } from '../../activities/failure-types';
import { revokeUnkeptTokensNow } from '../../activities/unkept-tokens';
import { unkeptTokenColumn } from '../../db/encrypted-columns';
import { migrate } from '../../db/migrate';
import { attachCodeToAuthorization, insertAuthorization } from '../../db/queries/authorizations';
import { findOrCreateLiveConnection } from '../../db/queries/connections';
import { insertUnkeptToken } from '../../db/queries/unkept-tokens';
import { insertUser } from '../../db/queries/users';
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
import { microsoftEnvironment, MICROSOFT_TEST_CLIENT } from '../helpers/microsoft';
import { fakeGoogleEnvironment, GOOGLE_TEST_CLIENT } from '../helpers/platform';

/**
 * The token writer's residual races (issue 11, second review): an attempt whose lease lapsed while it
 * was alive, an exchange whose store meets database faults, the kind of call a lease's mark is about,
 * and revokers of unkept tokens that overlap or hang. Real Postgres, fake providers over HTTP,
 * Temporal's MockActivityEnvironment.
 */

/** Long enough for every store retry and lease window here; the attempts are ended by the test, not by time. */
const START_TO_CLOSE_MS = 60_000;

let database: TestDatabase;
let google: FakeGoogle;
let microsoft: FakeMicrosoft;
let revocations: RevocationGate;
let config: Config;
let services: PlatformServices;
let activities: Activities;

beforeAll(async () => {
  database = await createTestDatabase(inject('databaseUrl'));
  await migrate(database.url);
  google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
  // Microsoft rotates on every refresh; here the token presented dies at once, the worst case.
  microsoft = await startFakeMicrosoft({ ...MICROSOFT_TEST_CLIENT, rotationGraceSeconds: 0 });
  revocations = await startRevocationGate();
  config = loadConfig({
    APP_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATABASE_URL: database.url,
    INTEGRATION_ENCRYPTION_KEY: generateEncryptionKey(),
    ...fakeGoogleEnvironment(google),
    // Google's revocations go to a gate this file controls.
    GOOGLE_REVOKE_URL: revocations.url,
    ...microsoftEnvironment(microsoft),
    TOKEN_LEASE_HEARTBEAT_INTERVAL_MS: '200',
  });
  // The API's pool: a lock held elsewhere makes a statement fail with lock_timeout, a transient fault.
  services = await createPlatformServices(config);
  activities = createActivities({ ...services, sso: createSsoSessionSync(config, services), clock: () => new Date() });
});

afterAll(async () => {
  await services?.db.end();
  await google?.close();
  await microsoft?.close();
  await revocations?.close();
  await database?.drop();
});

beforeEach(() => {
  google.reset();
  microsoft.reset();
  revocations.passAll();
  revocations.presented.splice(0);
});

const openGates: Array<() => void> = [];
afterEach(() => {
  openGates.splice(0).forEach((release) => release());
  revocations.passAll();
});

interface RevocationGate {
  url: string;
  /** Tokens presented for revocation, in the order they arrived. */
  presented: string[];
  hold(): void;
  passAll(): void;
  /** Answers held, waiting for the test. */
  waiting(): number;
  releaseNext(): void;
  close(): Promise<void>;
}

/** A revocation endpoint that answers 200 at once, or holds every answer until the test releases it. */
async function startRevocationGate(): Promise<RevocationGate> {
  const presented: string[] = [];
  const held: ServerResponse[] = [];
  let holding = false;
  const answer = (response: ServerResponse) => response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  const server: Server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      presented.push(new URLSearchParams(body).get('token') ?? '');
      if (holding) held.push(response);
      else answer(response);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/revoke`,
    presented,
    hold: () => (holding = true),
    passAll: () => {
      holding = false;
      held.splice(0).forEach(answer);
    },
    waiting: () => held.length,
    releaseNext: () => {
      const next = held.shift();
      if (next) answer(next);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Holds every token answer of a fake until the test releases it, by the order the requests arrived. */
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

/** One activity attempt, as a worker runs it; the environment lets the test cancel it and count its heartbeats. */
function attempt<A extends unknown[], R>(fn: (...args: A) => Promise<R>, args: A, info: Partial<Info> = {}) {
  const environment = new MockActivityEnvironment({ startToCloseTimeoutMs: START_TO_CLOSE_MS, ...info }, { logger: new DefaultLogger('ERROR') });
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
  const user = await insertUser(services.db, { email: `${randomUUID()}@example.com`, displayName: 'Race Test', passwordHash: 'not-a-real-hash' });
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

/** A user's consent at a fake's authorize endpoint: the code it redirects back with. */
async function consent(authorizeUrl: string, params: Record<string, string>): Promise<string> {
  const answer = await fetch(`${authorizeUrl}?${new URLSearchParams(params)}`, { redirect: 'manual' });
  return new URL(answer.headers.get('location')!).searchParams.get('code')!;
}

async function pendingGoogleConnection() {
  const { userId, connection } = await newConnection('google-calendar');
  const pkce = createPkcePair();
  const code = await consent(google.authorizeUrl, {
    client_id: GOOGLE_TEST_CLIENT.clientId,
    redirect_uri: redirectUriFor(config.http.publicBaseUrl, 'google-calendar'),
    response_type: 'code',
    scope: config.google.scopes.join(' '),
    state: 's',
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
    access_type: 'offline',
  });
  const authorizationId = await storeAuthorization(userId, connection.id, 'google-calendar', code, pkce.verifier);
  return { userId, connectionId: connection.id, authorizationId };
}

async function activeMicrosoftConnection(): Promise<{ connectionId: string; state: TokenState }> {
  const { userId, connection } = await newConnection('microsoft-calendar');
  const pkce = createPkcePair();
  const code = await consent(microsoft.authorizeUrl, {
    client_id: MICROSOFT_TEST_CLIENT.clientId,
    redirect_uri: redirectUriFor(config.http.publicBaseUrl, 'microsoft-calendar'),
    response_type: 'code',
    scope: config.microsoft.scopes.join(' '),
    state: 's',
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
  });
  const authorizationId = await storeAuthorization(userId, connection.id, 'microsoft-calendar', code, pkce.verifier);
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

/** The next attempt may take the lease: the holder's renewals were late, though it is alive. */
async function expireLease(connectionId: string): Promise<void> {
  await services.db.query(sql.unsafe`UPDATE integration_token_leases SET expires_at = now() - interval '1 second' WHERE connection_id = ${connectionId}`);
}

/** Another transaction locks the connection's lease row until `release`: a store meanwhile runs into lock_timeout. */
async function lockLeaseRow(connectionId: string) {
  let locked!: () => void;
  let release!: () => void;
  const isLocked = new Promise<void>((resolve) => (locked = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  const transaction = services.db.transaction(async (connection) => {
    await connection.query(sql.unsafe`SELECT 1 FROM integration_token_leases WHERE connection_id = ${connectionId} FOR UPDATE`);
    locked();
    await released;
  });
  await isLocked;
  return async () => {
    release();
    await transaction;
  };
}

/** Distinct transactions seen waiting for the lease row's lock at the store: one more each time the store runs again. */
async function storeLockWaits(seen: Set<string>): Promise<number> {
  const waiting = await services.db.anyFirst(sql.type(z.object({ started: z.string() }))`
    SELECT xact_start::text AS started FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%SELECT holder FROM integration_token_leases%'`);
  for (const started of waiting) seen.add(started);
  return seen.size;
}

const revocationAudits = (connectionId: string) =>
  services.db.any(sql.type(z.object({ outcome: z.string(), details: z.record(z.unknown()) }))`
    SELECT outcome, details FROM audit_log WHERE action = 'OAuthRevoke' AND connection_id = ${connectionId} ORDER BY id`);

const unkeptTokens = (connectionId: string) =>
  services.db.oneFirst(sql.type(z.object({ count: z.number().int() }))`SELECT count(*)::int AS count FROM unkept_provider_tokens WHERE connection_id = ${connectionId}`);

/** Sets aside `count` Google refresh tokens for revocation, as an exchange that did not keep them would. */
async function setAsideTokens(connectionId: string, count: number): Promise<string[]> {
  const tokens = Array.from({ length: count }, () => `1//unkept-${randomUUID()}`);
  for (const [index, token] of tokens.entries()) {
    const id = randomUUID();
    await insertUnkeptToken(services.db, {
      id,
      connectionId,
      provider: 'google-calendar',
      providerAccountId: null,
      tokenEnc: services.crypto.encrypt(token, unkeptTokenColumn(id)),
      reason: 'insufficient_scope',
      createdAt: new Date(Date.now() - (count - index) * 1000),
    });
  }
  return tokens;
}

describe('an attempt whose lease lapsed while it was alive', () => {
  it("goes first: the refusal of the token it rotated away is not final while it may still store, and its answer is kept", async () => {
    const { connectionId, state } = await activeMicrosoftConnection();
    const gate = gateAnswers(microsoft.switches);
    const first = attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 1 });
    // Microsoft rotated for the first attempt (the token it presented is dead at once), but its answer is held.
    await eventually(() => gate.arrived() === 1, 10_000, 'Microsoft rotated for the first attempt');
    await expireLease(connectionId);
    gate.passNew();

    const second = failureOf(await attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 2 }).settled);
    expect(second).toMatchObject({ type: FailureType.tokenWriteInProgress, nonRetryable: false });
    expect(await stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion, lastErrorKind: null });

    gate.release(0);
    const refreshed = valueOf(await first.settled);
    expect(refreshed.tokenVersion).toBe(state.tokenVersion + 1);
    const third = valueOf(await attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 3 }).settled);
    expect(third).toEqual(refreshed);
    const after = await stored(connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: refreshed.tokenVersion, lastErrorKind: null });
    expect(microsoft.liveRefreshTokens()).toContain(after.refreshToken);
  });

  it('that stored before the workflow marked the connection: needs_reauth applies only to the version refused, and the stored state is answered', async () => {
    const { connectionId, state } = await activeMicrosoftConnection();
    // The late attempt stores its answer (it rotated), between the refusal and the workflow's mark.
    valueOf(await attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }]).settled);
    const movedOn = await new MockActivityEnvironment().run(activities.markConnectionNeedsReauth, { connectionId, reason: 'invalid_grant', expectedVersion: state.tokenVersion });

    expect(movedOn).toMatchObject({ tokenVersion: state.tokenVersion + 1 });
    expect(await stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion + 1 });

    // At the version it refused, the move is made.
    expect(await new MockActivityEnvironment().run(activities.markConnectionNeedsReauth, { connectionId, reason: 'invalid_grant', expectedVersion: state.tokenVersion + 1 })).toBeUndefined();
    expect(await stored(connectionId)).toMatchObject({ status: 'needs_reauth', tokenVersion: state.tokenVersion + 1 });
  });
});

describe("a code exchange's store", () => {
  it('outlasts a transient database fault: the store runs again while the attempt lives', async () => {
    const pending = await pendingGoogleConnection();
    const gate = gateAnswers(google.switches);
    const running = attempt(activities.exchangeAuthorizationCode, [pending]);
    await eventually(() => gate.arrived() === 1, 10_000, 'the exchange reached Google');
    const release = await lockLeaseRow(pending.connectionId);
    gate.release(0);
    const seen = new Set<string>();
    await eventually(async () => (await storeLockWaits(seen)) >= 2, 20_000, 'the store waited for the lock a second time');
    await release();

    const exchanged = valueOf(await running.settled);
    const after = await stored(pending.connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: exchanged.tokenVersion });
    expect(google.liveRefreshTokens()).toContain(after.refreshToken);
    expect(await revocationAudits(pending.connectionId)).toEqual([]);
  });

  it('revokes what it obtained when it gives up, rather than drop it', async () => {
    const pending = await pendingGoogleConnection();
    const liveBefore = new Set(google.liveRefreshTokens());
    const gate = gateAnswers(google.switches);
    const running = attempt(activities.exchangeAuthorizationCode, [pending]);
    await eventually(() => gate.arrived() === 1, 10_000, 'the exchange reached Google');
    const release = await lockLeaseRow(pending.connectionId);
    gate.release(0);
    const seen = new Set<string>();
    await eventually(async () => (await storeLockWaits(seen)) >= 1, 20_000, 'the store waits for the lock');
    // Temporal gives the attempt up while its store still meets the fault.
    running.environment.cancel('TIMED_OUT');
    await eventually(() => revocations.presented.length === 1, 20_000, 'the obtained refresh token was presented for revocation');
    await release();
    expect('error' in (await running.settled)).toBe(true);

    const issued = google.liveRefreshTokens().filter((token) => !liveBefore.has(token));
    expect(revocations.presented).toEqual(issued);
    expect(await stored(pending.connectionId)).toMatchObject({ status: 'pending', refreshToken: null });
    expect(await revocationAudits(pending.connectionId)).toEqual([{ outcome: 'success', details: { reason: 'store_failed', revocation: 'revoked' } }]);
    expect(await unkeptTokens(pending.connectionId)).toBe(0);
  });
});

describe("the lease's unanswered mark", () => {
  it("concerns only its own kind of call: a refresh's lost answer does not make a refused code lost in flight", async () => {
    const { userId, connection } = await newConnection('google-calendar');
    const authorizationId = await storeAuthorization(userId, connection.id, 'google-calendar', `never-issued-${randomUUID()}`, createPkcePair().verifier);
    // A refresh at this very version left its call unanswered.
    await services.db.query(sql.unsafe`
      INSERT INTO integration_token_leases (connection_id, unanswered_token_version, unanswered_call, unanswered_since)
      VALUES (${connection.id}, ${connection.tokenVersion}, 'refresh', now() - interval '1 hour')`);

    const refused = failureOf(await attempt(activities.exchangeAuthorizationCode, [{ connectionId: connection.id, authorizationId }], { attempt: 2 }).settled);

    expect(refused).toMatchObject({ type: FailureType.authorizationRejected, nonRetryable: true });
    expect(await stored(connection.id)).toMatchObject({ lastErrorKind: 'invalid_grant' });
  });
});

describe('revoking unkept tokens', () => {
  it('settles a few per attempt and heartbeats meanwhile, so a hanging provider cannot time every attempt out', async () => {
    const { connection } = await newConnection('google-calendar');
    const tokens = await setAsideTokens(connection.id, 4);
    revocations.hold();
    const first = attempt(activities.revokeUnkeptTokens, [{ connectionId: connection.id, revocationWindowSeconds: 3600 }]);
    await eventually(() => revocations.presented.length === 1, 10_000, 'the first revocation reached the provider');
    await eventually(() => first.heartbeats() >= 2, 10_000, 'the attempt heartbeat while the provider hung');
    let outcome: Awaited<typeof first.settled> | undefined;
    void first.settled.then((value) => (outcome = value));
    while (outcome === undefined) {
      await eventually(() => outcome !== undefined || revocations.waiting() > 0, 20_000, 'a revocation waits for its answer, or the attempt settled');
      revocations.releaseNext();
    }

    expect(failureOf(outcome!)).toMatchObject({ type: FailureType.providerUnavailable, nonRetryable: false });
    expect(revocations.presented).toEqual(tokens.slice(0, 3));
    expect(await unkeptTokens(connection.id)).toBe(1);

    revocations.passAll();
    valueOf(await attempt(activities.revokeUnkeptTokens, [{ connectionId: connection.id, revocationWindowSeconds: 3600 }]).settled);
    expect(revocations.presented).toEqual(tokens);
    expect((await revocationAudits(connection.id)).map((audit) => audit.details.revocation)).toEqual(['revoked', 'revoked', 'revoked', 'revoked']);
  });

  it("claim each token: the exchange's immediate try leaves alone the one the activity is revoking", async () => {
    const { connection } = await newConnection('google-calendar');
    const [token] = await setAsideTokens(connection.id, 1);
    revocations.hold();
    const background = attempt(activities.revokeUnkeptTokens, [{ connectionId: connection.id, revocationWindowSeconds: 3600 }]);
    await eventually(() => revocations.presented.length === 1, 10_000, 'the activity presented the token');

    let nowDone = false;
    const now = revokeUnkeptTokensNow({ ...services, clock: () => new Date() }, connection.id).then(() => (nowDone = true));
    await eventually(() => nowDone || revocations.presented.length > 1, 10_000, 'the immediate try finished or presented the token too');
    expect(revocations.presented).toEqual([token]);

    revocations.passAll();
    await now;
    valueOf(await background.settled);
    expect(await revocationAudits(connection.id)).toEqual([{ outcome: 'success', details: { reason: 'insufficient_scope', revocation: 'revoked' } }]);
  });
});
