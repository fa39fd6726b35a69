import { randomUUID } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { sql } from 'slonik';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Activities } from '../../activities';
import { FailureType } from '../../activities/failure-types';
import { revokeUnkeptTokensNow } from '../../activities/unkept-tokens';
import { unkeptTokenColumn } from '../../db/encrypted-columns';
import { insertUnkeptToken } from '../../db/queries/unkept-tokens';
import type { FakeGoogle } from '../../fakes/google';
import type { FakeMicrosoft } from '../../fakes/microsoft';
import { createPkcePair } from '../../platform/pkce';
import type { PlatformServices } from '../../platform/services';
import { eventually } from '../helpers/eventually';
import { attempt as activityAttempt, failureOf, gateAnswers, startTokenWriteBed, valueOf, type TokenWriteBed } from '../helpers/token-writes';

/**
 * The token writer's residual races (issue 11, second review): an attempt whose lease lapsed while it
 * was alive, an exchange whose store meets database faults, the kind of call a lease's mark is about,
 * and revokers of unkept tokens that overlap or hang. Real Postgres, fake providers over HTTP,
 * Temporal's MockActivityEnvironment.
 */

/** Long enough for every store retry and lease window here; the attempts are ended by the test, not by time. */
const START_TO_CLOSE_MS = 60_000;

let bed: TokenWriteBed<'google' | 'microsoft'>;
let google: FakeGoogle;
let microsoft: FakeMicrosoft;
let revocations: RevocationGate;
let services: PlatformServices;
let activities: Activities;

beforeAll(async () => {
  revocations = await startRevocationGate();
  bed = await startTokenWriteBed({
    fakes: {
      google: {},
      // Microsoft rotates on every refresh; here the token presented dies at once, the worst case.
      microsoft: { rotationGraceSeconds: 0 },
    },
    environment: {
      // Google's revocations go to a gate this file controls.
      GOOGLE_REVOKE_URL: revocations.url,
      TOKEN_LEASE_HEARTBEAT_INTERVAL_MS: '200',
    },
  });
  // The API's pool (the bed's default): a lock held elsewhere makes a statement fail with lock_timeout, a transient fault.
  ({ google, microsoft, services, activities } = bed);
});

afterAll(async () => {
  await bed?.close();
  await revocations?.close();
});

beforeEach(() => {
  google.reset();
  microsoft.reset();
  revocations.passAll();
  revocations.presented.splice(0);
});

afterEach(() => revocations.passAll());

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

const attempt = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, args: A, info: Partial<Info> = {}) =>
  activityAttempt(fn, args, { startToCloseTimeoutMs: START_TO_CLOSE_MS, ...info });

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
    const { connectionId, state } = await bed.activeConnection('microsoft-calendar');
    const gate = gateAnswers(microsoft.switches);
    const first = attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 1 });
    // Microsoft rotated for the first attempt (the token it presented is dead at once), but its answer is held.
    await eventually(() => gate.arrived() === 1, 10_000, 'Microsoft rotated for the first attempt');
    await bed.expireLease(connectionId);
    gate.passNew();

    const second = failureOf(await attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 2 }).settled);
    expect(second).toMatchObject({ type: FailureType.tokenWriteInProgress, nonRetryable: false });
    expect(await bed.stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion, lastErrorKind: null });

    gate.release(0);
    const refreshed = valueOf(await first.settled);
    expect(refreshed.tokenVersion).toBe(state.tokenVersion + 1);
    const third = valueOf(await attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }], { attempt: 3 }).settled);
    expect(third).toEqual(refreshed);
    const after = await bed.stored(connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: refreshed.tokenVersion, lastErrorKind: null });
    expect(microsoft.liveRefreshTokens()).toContain(after.refreshToken);
  });

  it('that stored before the workflow marked the connection: needs_reauth applies only to the version refused, and the stored state is answered', async () => {
    const { connectionId, state } = await bed.activeConnection('microsoft-calendar');
    // The late attempt stores its answer (it rotated), between the refusal and the workflow's mark.
    valueOf(await attempt(activities.refreshConnectionTokens, [{ connectionId, expectedVersion: state.tokenVersion }]).settled);
    const movedOn = await new MockActivityEnvironment().run(activities.markConnectionNeedsReauth, { connectionId, reason: 'invalid_grant', expectedVersion: state.tokenVersion });

    expect(movedOn).toMatchObject({ tokenVersion: state.tokenVersion + 1 });
    expect(await bed.stored(connectionId)).toMatchObject({ status: 'active', tokenVersion: state.tokenVersion + 1 });

    // At the version it refused, the move is made.
    expect(await new MockActivityEnvironment().run(activities.markConnectionNeedsReauth, { connectionId, reason: 'invalid_grant', expectedVersion: state.tokenVersion + 1 })).toBeUndefined();
    expect(await bed.stored(connectionId)).toMatchObject({ status: 'needs_reauth', tokenVersion: state.tokenVersion + 1 });
  });
});

describe("a code exchange's store", () => {
  /** An exchange whose store meets another transaction's lock on the lease row once Google answered; `release` ends the lock. */
  async function exchangeMeetingLockedLease() {
    const pending = await bed.pendingConnection('google-calendar');
    const gate = gateAnswers(google.switches);
    const running = attempt(activities.exchangeAuthorizationCode, [pending]);
    await eventually(() => gate.arrived() === 1, 10_000, 'the exchange reached Google');
    const release = await bed.lockLeaseRow(pending.connectionId);
    gate.release(0);
    return { connectionId: pending.connectionId, running, release };
  }

  it('outlasts a transient database fault: the store runs again while the attempt lives', async () => {
    const { connectionId, running, release } = await exchangeMeetingLockedLease();
    const seen = new Set<string>();
    await eventually(async () => (await bed.storeLockWaits(seen)) >= 2, 20_000, 'the store waited for the lock a second time');
    await release();

    const exchanged = valueOf(await running.settled);
    const after = await bed.stored(connectionId);
    expect(after).toMatchObject({ status: 'active', tokenVersion: exchanged.tokenVersion });
    expect(google.liveRefreshTokens()).toContain(after.refreshToken);
    expect(await bed.revocationAudits(connectionId)).toEqual([]);
  });

  it('revokes what it obtained when it gives up, rather than drop it', async () => {
    const liveBefore = new Set(google.liveRefreshTokens());
    const { connectionId, running, release } = await exchangeMeetingLockedLease();
    const seen = new Set<string>();
    await eventually(async () => (await bed.storeLockWaits(seen)) >= 1, 20_000, 'the store waits for the lock');
    // Temporal gives the attempt up while its store still meets the fault.
    running.environment.cancel('TIMED_OUT');
    await eventually(() => revocations.presented.length === 1, 20_000, 'the obtained refresh token was presented for revocation');
    await release();
    expect('error' in (await running.settled)).toBe(true);

    const issued = google.liveRefreshTokens().filter((token) => !liveBefore.has(token));
    expect(revocations.presented).toEqual(issued);
    expect(await bed.stored(connectionId)).toMatchObject({ status: 'pending', refreshToken: null });
    expect(await bed.revocationAudits(connectionId)).toEqual([{ outcome: 'success', details: { reason: 'store_failed', revocation: 'revoked' } }]);
    expect(await bed.unkeptTokens(connectionId)).toBe(0);
  });
});

describe("the lease's unanswered mark", () => {
  it("concerns only its own kind of call: a refresh's lost answer does not make a refused code lost in flight", async () => {
    const { userId, connection } = await bed.newConnection('google-calendar');
    const authorizationId = await bed.storeAuthorization({
      userId,
      connectionId: connection.id,
      provider: 'google-calendar',
      code: `never-issued-${randomUUID()}`,
      verifier: createPkcePair().verifier,
    });
    // A refresh at this very version left its call unanswered.
    await services.db.query(sql.unsafe`
      INSERT INTO integration_token_leases (connection_id, unanswered_token_version, unanswered_call, unanswered_since)
      VALUES (${connection.id}, ${connection.tokenVersion}, 'refresh', now() - interval '1 hour')`);

    const refused = failureOf(await attempt(activities.exchangeAuthorizationCode, [{ connectionId: connection.id, authorizationId }], { attempt: 2 }).settled);

    expect(refused).toMatchObject({ type: FailureType.authorizationRejected, nonRetryable: true });
    expect(await bed.stored(connection.id)).toMatchObject({ lastErrorKind: 'invalid_grant' });
  });
});

describe('revoking unkept tokens', () => {
  it('settles a few per attempt and heartbeats meanwhile, so a hanging provider cannot time every attempt out', async () => {
    const { connection } = await bed.newConnection('google-calendar');
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
    expect(await bed.unkeptTokens(connection.id)).toBe(1);

    revocations.passAll();
    valueOf(await attempt(activities.revokeUnkeptTokens, [{ connectionId: connection.id, revocationWindowSeconds: 3600 }]).settled);
    expect(revocations.presented).toEqual(tokens);
    expect((await bed.revocationAudits(connection.id)).map((audit) => audit.details.revocation)).toEqual(['revoked', 'revoked', 'revoked', 'revoked']);
  });

  it("claim each token: the exchange's immediate try leaves alone the one the activity is revoking", async () => {
    const { connection } = await bed.newConnection('google-calendar');
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
    expect(await bed.revocationAudits(connection.id)).toEqual([{ outcome: 'success', details: { reason: 'insufficient_scope', revocation: 'revoked' } }]);
  });
});
