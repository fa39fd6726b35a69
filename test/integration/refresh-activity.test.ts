import { randomUUID } from 'node:crypto';
import type { ApplicationFailure, Info } from '@temporalio/activity';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { TokenState } from '../../activities';
import { FailureType, NON_RETRYABLE_FAILURES } from '../../activities/failure-types';
import { recordConnectionError } from '../../db/queries/connections';
import type { FakeGoogle } from '../../fakes/google';
import type { PlatformServices } from '../../platform/services';
import { eventually } from '../helpers/eventually';
import { failureOfRun, gateAnswers, runActivity, startTokenWriteBed, type TokenWriteBed } from '../helpers/token-writes';

/**
 * The refresh activity on its own (design invariants 2-4): real Postgres, the fake Google over HTTP,
 * and Temporal's MockActivityEnvironment, so the ApplicationFailure a workflow would see can be checked.
 */

const PROVIDER = 'google-calendar';

let bed: TokenWriteBed<'google'>;
let google: FakeGoogle;
let services: PlatformServices;

beforeAll(async () => {
  bed = await startTokenWriteBed({ fakes: { google: {} } });
  ({ google, services } = bed);
});

afterAll(() => bed?.close());

// Every case starts from a quiet fake whose earlier grants are all dead, so what is live is this case's.
beforeEach(() => {
  google.reset();
  google.revokeAllGrants();
});


// ---------------------------------------------------------------------------------------------
// Helpers

function refresh(connectionId: string, expectedVersion: number, info: Partial<Info> = {}): Promise<TokenState> {
  return runActivity(bed.activities.refreshConnectionTokens, [{ connectionId, expectedVersion }], info);
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

/** Refresh-grant requests the fake has answered since the last reset. */
function refreshCalls() {
  return google.calls.filter((call) => call.endpoint === 'token' && call.grantType === 'refresh_token');
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
  const { userId, connection } = await bed.newConnection(PROVIDER);
  expect(connection.status).toBe('pending');
  const authorizationId = await bed.authorize(PROVIDER, userId, connection.id);
  const state = await runActivity(bed.activities.exchangeAuthorizationCode, [{ connectionId: connection.id, authorizationId }]);

  const stored = await bed.stored(connection.id);
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

    const afterFirst = await bed.stored(seeded.connectionId);
    expect(afterFirst.tokenVersion).toBe(v + 1);
    expect(afterFirst.accessTokenExpiresAt).toBe(first.accessTokenExpiresAt);
    expect(afterFirst.accessToken).not.toBe(seeded.accessToken);
    expect(google.issuedSecrets()).toContain(afterFirst.accessToken);

    // Temporal retries with the same input when the completion was lost (worker killed, timeout).
    const retried = await refresh(seeded.connectionId, v, { attempt: 2 });
    expect(retried).toEqual(first);
    expect(refreshCalls()).toHaveLength(1);
    expect(await bed.stored(seeded.connectionId)).toEqual(afterFirst);
    expect(await bed.refreshAudits(seeded.connectionId)).toHaveLength(1);
  });

  it('a failure reported late, for a version already superseded, does not paint over the good state', async () => {
    const seeded = await seedActiveConnection();
    const v = seeded.state.tokenVersion;
    await refresh(seeded.connectionId, v);
    await recordConnectionError(services.db, { connectionId: seeded.connectionId, tokenVersion: v, kind: 'transient', message: 'late', at: new Date() });
    expect(await bed.stored(seeded.connectionId)).toMatchObject({ tokenVersion: v + 1, lastErrorKind: null, lastErrorMessage: null });

    await recordConnectionError(services.db, { connectionId: seeded.connectionId, tokenVersion: v + 1, kind: 'transient', message: 'current', at: new Date() });
    expect(await bed.stored(seeded.connectionId)).toMatchObject({ lastErrorKind: 'transient', lastErrorMessage: 'current' });
  });

  it('keeps the stored refresh token when Google answers without one (its default), and keeps no previous token', async () => {
    const seeded = await seedActiveConnection();

    const result = await refresh(seeded.connectionId, seeded.state.tokenVersion);

    const stored = await bed.stored(seeded.connectionId);
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

    const afterRotation = await bed.stored(seeded.connectionId);
    expect(afterRotation.tokenVersion).toBe(rotated.tokenVersion);
    expect(afterRotation.refreshToken).not.toBe(seeded.refreshToken);
    expect(google.liveRefreshTokens()).toEqual([afterRotation.refreshToken]);
    expect(afterRotation.previousRefreshToken).toBe(seeded.refreshToken);

    google.switches.rotateRefreshTokens = false;
    const confirmed = await refresh(seeded.connectionId, rotated.tokenVersion);

    const afterConfirmation = await bed.stored(seeded.connectionId);
    expect(afterConfirmation.tokenVersion).toBe(confirmed.tokenVersion);
    expect(confirmed.tokenVersion).toBe(rotated.tokenVersion + 1);
    expect(afterConfirmation.refreshToken).toBe(afterRotation.refreshToken);
    expect(afterConfirmation.previousRefreshToken).toBeNull();
    expect(refreshCalls().map((call) => call.status)).toEqual([200, 200]);
    expect((await bed.refreshAudits(seeded.connectionId)).map((row) => row.details.rotated)).toEqual([true, false]);
  });

  it('falls back to the previous refresh token when a rotated one was never committed by the provider', async () => {
    // The fake retires a refresh token as soon as it rotates it (see the next case), so the state a lost
    // rotation leaves behind is written directly: the newest token is unknown upstream, the previous is live.
    const seeded = await seedActiveConnection();
    const uncommitted = `1//never-committed-${randomUUID()}`;
    await bed.overwriteRefreshTokens(seeded.connectionId, { current: uncommitted, previous: seeded.refreshToken });

    const result = await refresh(seeded.connectionId, seeded.state.tokenVersion);

    expect(result.tokenVersion).toBe(seeded.state.tokenVersion + 1);
    expect(refreshCalls().map((call) => [call.status, call.error])).toEqual([
      [400, 'invalid_grant'],
      [200, undefined],
    ]);
    const stored = await bed.stored(seeded.connectionId);
    expect(stored).toMatchObject({
      tokenVersion: result.tokenVersion,
      refreshToken: seeded.refreshToken,
      previousRefreshToken: null,
      lastErrorKind: null,
    });
    expect(stored.accessToken).not.toBe(seeded.accessToken);
    const audits = await bed.refreshAudits(seeded.connectionId);
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

    await bed.overwriteRefreshTokens(seeded.connectionId, { current: `1//bogus-${randomUUID()}`, previous: seeded.refreshToken });
    const before = await bed.stored(seeded.connectionId);
    google.calls.length = 0;

    const failure = await failureOfRun(refresh(seeded.connectionId, rotated.tokenVersion));

    expectFinal(failure, FailureType.grantRevoked);
    expect(refreshCalls().map((call) => call.error)).toEqual(['invalid_grant', 'invalid_grant']);
    const after = await bed.stored(seeded.connectionId);
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
    const before = await bed.stored(seeded.connectionId);

    google.switches.invalidGrant = true;
    const failure = await failureOfRun(refresh(seeded.connectionId, seeded.state.tokenVersion));

    expectFinal(failure, FailureType.grantRevoked);
    expect(failure.message).not.toContain(seeded.refreshToken);
    expect(refreshCalls()).toEqual([expect.objectContaining({ status: 400, error: 'invalid_grant' })]);
    const after = await bed.stored(seeded.connectionId);
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
    expect(await bed.refreshAudits(seeded.connectionId)).toHaveLength(0);
  });

  it.each([503, 429])('turns a %i into a retryable ProviderUnavailable, and the next attempt succeeds and clears the error', async (status) => {
    const seeded = await seedActiveConnection();
    const before = await bed.stored(seeded.connectionId);

    google.switches.failNext(1, status);
    const failure = await failureOfRun(refresh(seeded.connectionId, seeded.state.tokenVersion));

    expectRetryable(failure, FailureType.providerUnavailable);
    const failed = await bed.stored(seeded.connectionId);
    expect(failed.lastErrorKind).toBe('transient');
    expect(failed.lastErrorMessage).toContain(String(status));
    expect(failed).toMatchObject({ tokenVersion: before.tokenVersion, accessToken: before.accessToken, refreshToken: before.refreshToken });

    const result = await refresh(seeded.connectionId, seeded.state.tokenVersion, { attempt: 2 });

    expect(result.tokenVersion).toBe(seeded.state.tokenVersion + 1);
    expect(refreshCalls().map((call) => call.status)).toEqual([status, 200]);
    expect(await bed.stored(seeded.connectionId)).toMatchObject({
      tokenVersion: result.tokenVersion,
      lastErrorKind: null,
      lastErrorMessage: null,
      lastErrorAt: null,
    });
  });

  it('stores what Google answered despite a database fault at the store: the store runs again while the attempt lives', async () => {
    const seeded = await seedActiveConnection();
    google.switches.rotateRefreshTokens = true;
    const gate = gateAnswers(google.switches);
    const running = refresh(seeded.connectionId, seeded.state.tokenVersion, { startToCloseTimeoutMs: 60_000, currentAttemptScheduledTimestampMs: Date.now() });
    await eventually(() => gate.arrived() === 1, 10_000, 'Google rotated the refresh token');

    // Another transaction holds the lease row: the store's first try runs into this pool's lock timeout (a transient fault).
    const release = await bed.lockLeaseRow(seeded.connectionId);
    const seen = new Set<string>();
    gate.releaseAll();
    await eventually(async () => (await bed.storeLockWaits(seen)) >= 2, 20_000, 'the store waited for the lock a second time');
    await release();

    const result = await running;
    expect(result.tokenVersion).toBe(seeded.state.tokenVersion + 1);
    const stored = await bed.stored(seeded.connectionId);
    expect(stored).toMatchObject({ tokenVersion: result.tokenVersion, previousRefreshToken: seeded.refreshToken, lastErrorKind: null });
    expect(google.liveRefreshTokens()).toEqual([stored.refreshToken]);
  });

  it('provider work refuses a stored access token that has expired (an attempt retried long after the workflow checked it): AccessTokenExpired, nobody called', async () => {
    const seeded = await seedActiveConnection();
    await services.db.query(sql.unsafe`UPDATE integration_connections SET access_token_expires_at = now() - interval '1 minute' WHERE id = ${seeded.connectionId}`);

    const failure = await failureOfRun(runActivity(bed.activities.syncConnection, [{ connectionId: seeded.connectionId, reason: 'scheduled', full: false }]));

    expectFinal(failure, FailureType.accessTokenExpired);
    expect(google.calls).toEqual([]);
    const runs = await services.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM sync_runs WHERE connection_id = ${seeded.connectionId}`);
    expect(runs).toBe(0);
  });

  it('refuses a disconnected connection with a non-retryable ConnectionGone and calls nobody', async () => {
    const seeded = await seedActiveConnection();
    await services.db.query(sql.unsafe`UPDATE integration_connections SET status = 'disconnected' WHERE id = ${seeded.connectionId}`);
    const before = await bed.stored(seeded.connectionId);

    const failure = await failureOfRun(refresh(seeded.connectionId, seeded.state.tokenVersion));

    expectFinal(failure, FailureType.connectionGone);
    expect(google.calls).toEqual([]);
    expect(await bed.stored(seeded.connectionId)).toEqual(before);
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
    await failureOfRun(refresh(seeded.connectionId, rotated.tokenVersion));
    const confirmed = await refresh(seeded.connectionId, rotated.tokenVersion);
    versions.push(confirmed.tokenVersion);
    google.switches.invalidGrant = true;
    await failureOfRun(refresh(seeded.connectionId, confirmed.tokenVersion));
    google.switches.invalidGrant = false;

    const rows = await bed.refreshAudits(seeded.connectionId);
    expect(rows.map((row) => row.outcome)).toEqual(['success', 'success', 'success']);
    expect(rows.map((row) => row.details.tokenVersion)).toEqual(versions);
    expect(rows.map((row) => row.details.rotated)).toEqual([false, true, false]);
    expect(rows.map((row) => row.details.fellBackToPreviousGrant)).toEqual([false, false, false]);

    // Every audit row in the database, whichever case wrote it, against every secret the fake ever issued.
    const secrets = google.issuedSecrets();
    const stored = await bed.stored(seeded.connectionId);
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
