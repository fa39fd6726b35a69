import { randomUUID } from 'node:crypto';
import { ApplicationFailure, type Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { sql } from 'slonik';
import { z } from 'zod';
import { expect, inject, onTestFinished } from 'vitest';
import { createActivities, type ActivityDependencies, type TokenState } from '../../activities';
import { migrate } from '../../db/migrate';
import { attachCodeToAuthorization, insertAuthorization } from '../../db/queries/authorizations';
import { findOrCreateLiveConnection } from '../../db/queries/connections';
import { insertUser } from '../../db/queries/users';
import { startFakeAirbnb, type FakeAirbnb, type FakeAirbnbOptions } from '../../fakes/airbnb';
import { startFakeGoogle, type FakeGoogle, type FakeGoogleOptions } from '../../fakes/google';
import { startFakeMicrosoft, type FakeMicrosoft, type FakeMicrosoftOptions } from '../../fakes/microsoft';
import { loadConfig, type Config } from '../../platform/config';
import { generateEncryptionKey, type FieldBinding } from '../../platform/integration-crypto';
import { createPkcePair } from '../../platform/pkce';
import { redirectUriFor, type ProviderId } from '../../platform/providers/provider';
import { hashBearerValue, randomToken } from '../../platform/secrets';
import { createPlatformServices, type PlatformServices } from '../../platform/services';
import { createSsoSessionSync } from '../../platform/sso/backchannel-delivery';
import { airbnbEnvironment, AIRBNB_TEST_CLIENT } from './airbnb';
import { createTestDatabase, type TestDatabase } from './database';
import { microsoftEnvironment, MICROSOFT_TEST_CLIENT } from './microsoft';
import { fakeGoogleEnvironment, GOOGLE_TEST_CLIENT } from './platform';

/*
 * The token writers' activities on their own (test/integration): a database of their own, the fake
 * providers over HTTP, and attempts run as a worker runs them in Temporal's MockActivityEnvironment.
 * Connections are seeded as a browser and our callback would seed them, without the API.
 */

/** An environment whose logger keeps warnings about expected failures out of the output. */
export function activityEnvironment(info: Partial<Info> = {}): MockActivityEnvironment {
  return new MockActivityEnvironment(info, { logger: new DefaultLogger('ERROR') });
}

export function runActivity<A extends unknown[], R>(fn: (...args: A) => Promise<R>, args: A, info: Partial<Info> = {}): Promise<R> {
  return activityEnvironment(info).run(fn, ...args);
}

/** How an attempt ended: a settled attempt never rejects, so a test can look at a failure it expects. */
export type Outcome<R> = { value: R } | { error: unknown };

function settle<R>(run: Promise<R>): Promise<Outcome<R>> {
  return run.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

/** One activity attempt, as a worker runs it; the environment lets the test cancel it and count its heartbeats. */
export function attempt<A extends unknown[], R>(fn: (...args: A) => Promise<R>, args: A, info: Partial<Info> = {}) {
  const environment = activityEnvironment(info);
  let heartbeats = 0;
  environment.on('heartbeat', () => (heartbeats += 1));
  return { environment, settled: settle(environment.run(fn, ...args) as Promise<R>), heartbeats: () => heartbeats };
}

/** The ApplicationFailure the attempt ended with (fails the test when it completed or threw something else). */
export function failureOf(outcome: Outcome<unknown>): ApplicationFailure {
  if (!('error' in outcome)) throw new Error(`the activity completed with ${JSON.stringify(outcome.value)}, expected a failure`);
  expect(outcome.error).toBeInstanceOf(ApplicationFailure);
  return outcome.error as ApplicationFailure;
}

/** The ApplicationFailure an activity run rejected with, as failureOf. */
export async function failureOfRun(run: Promise<unknown>): Promise<ApplicationFailure> {
  return failureOf(await settle(run));
}

export function valueOf<T>(outcome: Outcome<T>): T {
  if ('error' in outcome) throw outcome.error;
  return outcome.value;
}

/**
 * Holds every token answer of a fake (after it acted) until the test releases it, by the order the
 * requests arrived. `passNew` lets requests that arrive from then on through; those held stay held.
 */
export function gateAnswers(switches: { holdAnswer: (() => Promise<void>) | undefined }) {
  const held: Array<() => void> = [];
  switches.holdAnswer = () => new Promise<void>((resolve) => held.push(resolve));
  // A case that failed half-way lets its attempts end, so none acts in the next case.
  onTestFinished(() => held.forEach((release) => release()));
  return {
    arrived: () => held.length,
    release: (index: number) => held[index]!(),
    releaseAll: () => held.forEach((release) => release()),
    passNew: () => (switches.holdAnswer = undefined),
  };
}

export type AnswerGate = ReturnType<typeof gateAnswers>;

interface Fakes {
  airbnb: FakeAirbnb;
  google: FakeGoogle;
  microsoft: FakeMicrosoft;
}

interface FakeOptions {
  airbnb: Partial<FakeAirbnbOptions>;
  google: Partial<FakeGoogleOptions>;
  microsoft: Partial<FakeMicrosoftOptions>;
}

export interface TokenWriteBedOptions<F extends keyof Fakes> {
  /** The fakes to start, each with its provider's test client and these options; the platform talks to them. */
  fakes: Pick<FakeOptions, F>;
  /** Settings over those that point the platform at the fakes. */
  environment?: Record<string, string>;
  /** Whose database pool: the worker's waits for locks unbounded; the api-server's (the default) fails a statement with lock_timeout. */
  process?: 'worker';
}

export type TokenWriteBed<F extends keyof Fakes> = Pick<Fakes, F> & ReturnType<typeof bedOn>;

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

const refreshAuditRow = z.object({
  outcome: z.string(),
  details: z.object({ tokenVersion: z.number(), rotated: z.boolean(), fellBackToPreviousGrant: z.boolean() }).passthrough(),
});

const connectionColumn = (rowId: string, column: string): FieldBinding => ({ table: 'integration_connections', column, rowId });
const authorizationColumn = (rowId: string, column: string): FieldBinding => ({ table: 'integration_authorizations', column, rowId });

/** What a browser does at a fake's authorize endpoint: the user consents at once; the code it redirects back with. */
async function consentCode(authorizeUrl: string, params: Record<string, string>): Promise<string> {
  const consent = await fetch(`${authorizeUrl}?${new URLSearchParams(params)}`, { redirect: 'manual' });
  expect(consent.status).toBe(302);
  const callback = new URL(consent.headers.get('location')!);
  expect(callback.searchParams.get('state')).toBe(params.state);
  const code = callback.searchParams.get('code');
  expect(code).toBeTruthy();
  return code!;
}

/** The fakes asked for, the platform's services pointed at them, and the activities a worker would build. */
export async function startTokenWriteBed<F extends keyof Fakes>(options: TokenWriteBedOptions<F>): Promise<TokenWriteBed<F>> {
  const wanted: Partial<FakeOptions> = options.fakes;
  const fakes: Partial<Fakes> = {};
  let database: TestDatabase | undefined;
  let services: PlatformServices | undefined;
  try {
    if (wanted.airbnb) fakes.airbnb = await startFakeAirbnb({ ...AIRBNB_TEST_CLIENT, ...wanted.airbnb });
    if (wanted.google) fakes.google = await startFakeGoogle({ ...GOOGLE_TEST_CLIENT, ...wanted.google });
    if (wanted.microsoft) fakes.microsoft = await startFakeMicrosoft({ ...MICROSOFT_TEST_CLIENT, ...wanted.microsoft });
    database = await createTestDatabase(inject('databaseUrl'));
    await migrate(database.url);
    const config = loadConfig({
      APP_ENV: 'test',
      LOG_LEVEL: 'silent',
      DATABASE_URL: database.url,
      INTEGRATION_ENCRYPTION_KEY: generateEncryptionKey(),
      ...(fakes.airbnb ? airbnbEnvironment(fakes.airbnb) : {}),
      ...(fakes.google ? fakeGoogleEnvironment(fakes.google) : {}),
      ...(fakes.microsoft ? microsoftEnvironment(fakes.microsoft) : {}),
      ...options.environment,
    });
    services = await createPlatformServices(config, options.process ? { process: options.process } : {});
    return { ...bedOn(database, config, services, fakes), ...fakes } as TokenWriteBed<F>;
  } catch (error) {
    // A file whose start-up failed must still end: nothing started may keep its process alive.
    await services?.db.end();
    await closeFakes(fakes);
    await database?.drop();
    throw error;
  }
}

async function closeFakes(fakes: Partial<Fakes>): Promise<void> {
  await Promise.all(Object.values(fakes).map((fake) => fake.close()));
}

function bedOn(database: TestDatabase, config: Config, services: PlatformServices, fakes: Partial<Fakes>) {
  const dependencies: ActivityDependencies = { ...services, sso: createSsoSessionSync(config, services), clock: () => new Date() };
  const activities = createActivities(dependencies);
  const { db, crypto } = services;

  function fakeOf<K extends keyof Fakes>(name: K): Fakes[K] {
    const fake = fakes[name];
    if (!fake) throw new Error(`no fake ${name} was started`);
    return fake as Fakes[K];
  }

  /** The consent our authorize URL asks the provider's fake for: its code, and the PKCE verifier that redeems it. */
  async function consent(provider: ProviderId, state: string, scopes: string[] | undefined) {
    const pkce = createPkcePair();
    const asked = { redirect_uri: redirectUriFor(config.http.publicBaseUrl, provider), state };
    const withPkce = { ...asked, response_type: 'code', code_challenge: pkce.challenge, code_challenge_method: 'S256' };
    const scope = (defaults: string[]) => (scopes ?? defaults).join(' ');
    let code: string;
    if (provider === 'google-calendar') {
      code = await consentCode(fakeOf('google').authorizeUrl, { ...withPkce, client_id: GOOGLE_TEST_CLIENT.clientId, scope: scope(config.google.scopes), access_type: 'offline' });
    } else if (provider === 'microsoft-calendar') {
      code = await consentCode(fakeOf('microsoft').authorizeUrl, { ...withPkce, client_id: MICROSOFT_TEST_CLIENT.clientId, scope: scope(config.microsoft.scopes) });
    } else if (provider === 'airbnb') {
      // Airbnb takes no PKCE. A new host is the one who approves.
      fakeOf('airbnb').createHost([]);
      code = await consentCode(fakeOf('airbnb').authorizeUrl, { ...asked, client_id: AIRBNB_TEST_CLIENT.clientId });
    } else {
      throw new Error(`no fake ${provider} to consent at`);
    }
    return { code, verifier: pkce.verifier };
  }

  /** A new user and a pending connection of theirs to `provider`. */
  async function newConnection(provider: ProviderId) {
    const user = await insertUser(db, { email: `${randomUUID()}@example.com`, displayName: 'Token Write Test', passwordHash: 'not-a-real-hash' });
    return { userId: user.id, connection: await findOrCreateLiveConnection(db, user.id, provider) };
  }

  /** An authorization of the connection as our callback stores one: the code, and the PKCE verifier that redeems it. */
  async function storeAuthorization(input: { userId: string; connectionId: string; provider: ProviderId; code: string; verifier: string; state?: string }): Promise<string> {
    const authorizationId = randomUUID();
    await insertAuthorization(db, {
      id: authorizationId,
      userId: input.userId,
      provider: input.provider,
      stateHash: hashBearerValue(input.state ?? randomToken()),
      codeVerifierEnc: crypto.encrypt(input.verifier, authorizationColumn(authorizationId, 'code_verifier_enc')),
      redirectUri: redirectUriFor(config.http.publicBaseUrl, input.provider),
      expiresAt: new Date(Date.now() + 10 * 60 * 1000),
    });
    await attachCodeToAuthorization(db, authorizationId, crypto.encrypt(input.code, authorizationColumn(authorizationId, 'code_enc')), input.connectionId);
    return authorizationId;
  }

  /** The user's consent at the provider's fake (to `scopes` instead of ours, if given), its code attached to the connection. */
  async function authorize(provider: ProviderId, userId: string, connectionId: string, scopes?: string[]): Promise<string> {
    const state = randomToken();
    const { code, verifier } = await consent(provider, state, scopes);
    return storeAuthorization({ userId, connectionId, provider, code, verifier, state });
  }

  /** A new user's pending connection whose authorization holds a fresh code from the fake: the code exchange's input. */
  async function pendingConnection(provider: ProviderId): Promise<{ connectionId: string; authorizationId: string }> {
    const { userId, connection } = await newConnection(provider);
    return { connectionId: connection.id, authorizationId: await authorize(provider, userId, connection.id) };
  }

  /** A new user's connection whose tokens came from a code exchange at the fake. */
  async function activeConnection(provider: ProviderId): Promise<{ connectionId: string; state: TokenState }> {
    const pending = await pendingConnection(provider);
    return { connectionId: pending.connectionId, state: await runActivity(activities.exchangeAuthorizationCode, [pending]) };
  }

  /** The connection's columns, token columns decrypted. */
  async function stored(connectionId: string) {
    const row = await db.one(sql.type(storedRow)`
      SELECT status::text AS status, token_version AS "tokenVersion", access_token_enc AS "accessTokenEnc",
             refresh_token_enc AS "refreshTokenEnc", previous_refresh_token_enc AS "previousRefreshTokenEnc",
             access_token_expires_at AS "accessTokenExpiresAt", last_error_kind AS "lastErrorKind",
             last_error_message AS "lastErrorMessage", last_error_at AS "lastErrorAt"
      FROM integration_connections WHERE id = ${connectionId}`);
    const open = (envelope: string | null, column: string) => (envelope === null ? null : crypto.decrypt(envelope, connectionColumn(connectionId, column)));
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
    const current = crypto.encrypt(tokens.current, connectionColumn(connectionId, 'refresh_token_enc'));
    const previous = tokens.previous === null ? null : crypto.encrypt(tokens.previous, connectionColumn(connectionId, 'previous_refresh_token_enc'));
    await db.query(sql.unsafe`
      UPDATE integration_connections SET refresh_token_enc = ${current}, previous_refresh_token_enc = ${previous}
      WHERE id = ${connectionId}`);
  }

  /** The next attempt may take the lease: its holder's renewals were late, or its worker looks dead. */
  async function expireLease(connectionId: string): Promise<void> {
    await db.query(sql.unsafe`UPDATE integration_token_leases SET expires_at = now() - interval '1 second' WHERE connection_id = ${connectionId}`);
  }

  /** Another transaction locks the connection's lease row, from when this resolves until the function it resolves to is called. */
  async function lockLeaseRow(connectionId: string): Promise<() => Promise<void>> {
    let locked!: () => void;
    let release!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    const transaction = db.transaction(async (connection) => {
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

  /** Distinct transactions seen waiting for the lease row's lock at the store (it locks the row first): one more each time the store runs again. */
  async function storeLockWaits(seen: Set<string>): Promise<number> {
    const waiting = await db.anyFirst(sql.type(z.object({ started: z.string() }))`
      SELECT xact_start::text AS started FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%SELECT holder FROM integration_token_leases%'`);
    for (const started of waiting) seen.add(started);
    return seen.size;
  }

  return {
    database,
    config,
    services,
    activities,
    /** Activities built as the worker builds them, but with these dependencies. */
    activitiesWith: (overrides: Partial<ActivityDependencies>) => createActivities({ ...dependencies, ...overrides }),
    newConnection,
    storeAuthorization,
    authorize,
    pendingConnection,
    activeConnection,
    stored,
    overwriteRefreshTokens,
    expireLease,
    lockLeaseRow,
    storeLockWaits,
    refreshAudits: (connectionId: string) =>
      db.any(sql.type(refreshAuditRow)`
        SELECT outcome, details FROM audit_log WHERE action = 'OAuthTokenRefresh' AND connection_id = ${connectionId} ORDER BY id`),
    revocationAudits: (connectionId: string) =>
      db.any(sql.type(z.object({ outcome: z.string(), details: z.record(z.unknown()) }))`
        SELECT outcome, details FROM audit_log WHERE action = 'OAuthRevoke' AND connection_id = ${connectionId} ORDER BY id`),
    unkeptTokens: (connectionId: string) =>
      db.oneFirst(sql.type(z.object({ count: z.number().int() }))`SELECT count(*)::int AS count FROM unkept_provider_tokens WHERE connection_id = ${connectionId}`),
    async close(): Promise<void> {
      await db.end();
      await closeFakes(fakes);
      await database.drop();
    },
  };
}
