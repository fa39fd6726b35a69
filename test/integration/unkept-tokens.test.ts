import { randomUUID } from 'node:crypto';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Activities } from '../../activities';
import { AUTHORIZATION_LOST_IN_FLIGHT, FailureType, NON_RETRYABLE_FAILURES } from '../../activities/failure-types';
import { findOrCreateLiveConnection } from '../../db/queries/connections';
import type { FakeGoogle } from '../../fakes/google';
import type { PlatformServices } from '../../platform/services';
import { eventually } from '../helpers/eventually';
import { activityEnvironment, failureOfRun, runActivity, startTokenWriteBed, type TokenWriteBed } from '../helpers/token-writes';

/**
 * Issue 11 defects 2 and 3 at the activities (real Postgres, the fake Google over HTTP, Temporal's
 * MockActivityEnvironment): which revocation failures are final, and tokens an exchange obtained for a
 * connection disconnected meanwhile are revoked, through an outage if need be.
 */

const PROVIDER = 'google-calendar';

let bed: TokenWriteBed<'google'>;
let google: FakeGoogle;
let services: PlatformServices;
let activities: Activities;

beforeAll(async () => {
  bed = await startTokenWriteBed({ fakes: { google: { revocationEndsAccountGrants: true } } });
  ({ google, services, activities } = bed);
});

afterAll(() => bed?.close());

// Every case starts from a quiet fake whose earlier grants are all dead, so what is live is this case's.
beforeEach(() => {
  google.reset();
  google.revokeAllGrants();
});

const setStatus = (connectionId: string, status: string) =>
  services.db.query(sql.unsafe`UPDATE integration_connections SET status = ${status}::connection_status WHERE id = ${connectionId}`);

const userOf = (connectionId: string) =>
  services.db.oneFirst(sql.type(z.object({ userId: z.string() }))`SELECT user_id AS "userId" FROM integration_connections WHERE id = ${connectionId}`);

const disconnectRequest = (connectionId: string) => ({ connectionId, requestedBy: { type: 'user' as const } });

/** A disconnect's revocation of an active connection's token, to which the provider answers `status` and `error`. */
async function revocationRefusedWith(status: number, error: string) {
  const { connectionId } = await bed.activeConnection(PROVIDER);
  google.switches.refuseRevocations = { status, error };
  return failureOfRun(runActivity(activities.revokeConnectionUpstream, [disconnectRequest(connectionId)]));
}

const WINDOW_SECONDS = 2 * 3600;

const connectionStatus = (connectionId: string) =>
  services.db.oneFirst(sql.type(z.object({ status: z.string() }))`SELECT status::text AS status FROM integration_connections WHERE id = ${connectionId}`);

describe('tokens obtained for a connection disconnected during the authorization', () => {
  it('are revoked, and the exchange still reports the connection gone', async () => {
    const { connectionId, authorizationId } = await bed.pendingConnection(PROVIDER);
    await setStatus(connectionId, 'disconnecting');

    const failure = await failureOfRun(runActivity(activities.exchangeAuthorizationCode, [{ connectionId, authorizationId }]));
    expect([failure.type, failure.nonRetryable]).toEqual([FailureType.connectionGone, true]);
    expect(google.calls.filter((call) => call.endpoint === 'revoke').map((call) => call.status)).toEqual([200]);
    expect(google.liveRefreshTokens()).toEqual([]);
    expect(await bed.revocationAudits(connectionId)).toEqual([{ outcome: 'success', details: { reason: 'disconnected_during_authorization', revocation: 'revoked' } }]);
    expect(await bed.unkeptTokens(connectionId)).toBe(0);
  });

  it('wait through a provider outage for the retried activity, then are revoked and audited once', async () => {
    const { connectionId, authorizationId } = await bed.pendingConnection(PROVIDER);
    await setStatus(connectionId, 'disconnecting');
    google.switches.refuseRevocations = { status: 503, error: 'backend_error' };

    expect((await failureOfRun(runActivity(activities.exchangeAuthorizationCode, [{ connectionId, authorizationId }]))).type).toBe(FailureType.connectionGone);
    expect(google.liveRefreshTokens()).toHaveLength(1);
    expect(await bed.unkeptTokens(connectionId)).toBe(1);
    const retried = await failureOfRun(runActivity(activities.revokeUnkeptTokens, [{ connectionId, revocationWindowSeconds: WINDOW_SECONDS }]));
    expect([retried.type, retried.nonRetryable]).toEqual([FailureType.providerUnavailable, false]);
    expect(await bed.revocationAudits(connectionId)).toEqual([]);

    google.switches.refuseRevocations = undefined;
    await runActivity(activities.revokeUnkeptTokens, [{ connectionId, revocationWindowSeconds: WINDOW_SECONDS }]);
    expect(google.liveRefreshTokens()).toEqual([]);
    expect(await bed.unkeptTokens(connectionId)).toBe(0);
    await runActivity(activities.revokeUnkeptTokens, [{ connectionId, revocationWindowSeconds: WINDOW_SECONDS }]);
    expect(await bed.revocationAudits(connectionId)).toEqual([{ outcome: 'success', details: { reason: 'disconnected_during_authorization', revocation: 'revoked' } }]);
  });
});

describe('the revocation window', () => {
  it('is the one the workflow passes: past it, a token the provider still cannot revoke is recorded as a failed revocation', async () => {
    const { connectionId, authorizationId } = await bed.pendingConnection(PROVIDER);
    await setStatus(connectionId, 'disconnecting');
    google.switches.refuseRevocations = { status: 503, error: 'backend_error' };
    await failureOfRun(runActivity(activities.exchangeAuthorizationCode, [{ connectionId, authorizationId }]));
    await services.db.query(sql.unsafe`UPDATE unkept_provider_tokens SET created_at = now() - interval '20 minutes' WHERE connection_id = ${connectionId}`);

    // Twenty minutes is well inside the default two hours, but past a ten-minute window.
    await runActivity(activities.revokeUnkeptTokens, [{ connectionId, revocationWindowSeconds: 600 }]);
    expect(await bed.unkeptTokens(connectionId)).toBe(0);
    expect(await bed.revocationAudits(connectionId)).toEqual([
      { outcome: 'failure', details: { reason: 'disconnected_during_authorization', error: expect.stringContaining('503'), attempts: 2 } },
    ]);
  });
});

describe('a newer authorization of a connection marked failed meanwhile', () => {
  it('is stored: the connection comes back active', async () => {
    const { connectionId, authorizationId } = await bed.pendingConnection(PROVIDER);
    // The previous code failed and the workflow marked the connection failed while this callback was answered.
    await setStatus(connectionId, 'failed');

    const stored = await runActivity(activities.exchangeAuthorizationCode, [{ connectionId, authorizationId }]);
    expect(stored.tokenVersion).toBe(1);
    expect(await connectionStatus(connectionId)).toBe('active');
    expect(google.liveRefreshTokens()).toHaveLength(1);
  });

  it('is revoked, not stored, when the user has another live connection to the provider by then', async () => {
    const { connectionId, authorizationId } = await bed.pendingConnection(PROVIDER);
    await setStatus(connectionId, 'failed');
    const other = await findOrCreateLiveConnection(services.db, await userOf(connectionId), PROVIDER);

    const failure = await failureOfRun(runActivity(activities.exchangeAuthorizationCode, [{ connectionId, authorizationId }]));
    expect([failure.type, failure.nonRetryable]).toEqual([FailureType.connectionGone, true]);
    expect(await connectionStatus(connectionId)).toBe('failed');
    expect(await connectionStatus(other.id)).toBe('pending');
    expect(google.liveRefreshTokens()).toEqual([]);
    expect(await bed.revocationAudits(connectionId)).toEqual([{ outcome: 'success', details: { reason: 'disconnected_during_authorization', revocation: 'revoked' } }]);
  });
});

describe("a disconnect's revocation", () => {
  it.each([
    [401, 'invalid_client'],
    [400, 'invalid_request'],
    [403, 'access_denied'],
  ])('is final at once when the provider refuses with %i %s', async (status, error) => {
    const failure = await revocationRefusedWith(status, error);
    expect(failure.nonRetryable).toBe(true);
    expect(NON_RETRYABLE_FAILURES).toContain(failure.type);
    expect(failure.message).toContain(error);
  });

  it.each([
    [503, 'backend_error'],
    [429, 'rate_limit_exceeded'],
    [408, 'request_timeout'],
  ])('is retried when the provider answers %i %s', async (status, error) => {
    const failure = await revocationRefusedWith(status, error);
    expect([failure.type, failure.nonRetryable]).toEqual([FailureType.providerUnavailable, false]);
  });

  it('is final at once when the stored token cannot be decrypted', async () => {
    const { connectionId } = await bed.activeConnection(PROVIDER);
    // A value bound to another row fails authentication, as one under a lost key does.
    const foreign = services.crypto.encrypt('a-refresh-token', { table: 'integration_connections', column: 'refresh_token_enc', rowId: randomUUID() });
    await services.db.query(sql.unsafe`UPDATE integration_connections SET refresh_token_enc = ${foreign} WHERE id = ${connectionId}`);
    const failure = await failureOfRun(runActivity(activities.revokeConnectionUpstream, [disconnectRequest(connectionId)]));
    expect([failure.type, failure.nonRetryable]).toEqual([FailureType.credentialUnreadable, true]);
    expect(google.calls.filter((call) => call.endpoint === 'revoke')).toEqual([]);
  });
});

const recordedError = (connectionId: string) =>
  services.db.one(sql.type(z.object({ kind: z.string().nullable(), version: z.number() }))`
    SELECT last_error_kind AS kind, token_version AS version FROM integration_connections WHERE id = ${connectionId}`);

const leaseHolder = (connectionId: string) =>
  services.db.maybeOneFirst(sql.type(z.object({ holder: z.string().nullable() }))`SELECT holder FROM integration_token_leases WHERE connection_id = ${connectionId}`);

describe('a re-consent under a refresh that stores late', () => {
  it('is stored on the version that refresh left, not dropped as a disconnect', async () => {
    const { connectionId } = await bed.activeConnection(PROVIDER);
    const authorizationId = await bed.authorize(PROVIDER, await userOf(connectionId), connectionId);
    // A refresh attempt that lost its lease stores while this exchange's provider call is out.
    google.switches.holdAnswer = async () => {
      google.switches.holdAnswer = undefined;
      await services.db.query(sql.unsafe`UPDATE integration_connections SET token_version = token_version + 1 WHERE id = ${connectionId}`);
    };

    const stored = await runActivity(activities.exchangeAuthorizationCode, [{ connectionId, authorizationId }]);
    expect(stored.tokenVersion).toBe(3);
    expect(await connectionStatus(connectionId)).toBe('active');
    // The new grant is kept: only the one it replaced (another account's) is revoked.
    expect(google.liveRefreshTokens()).toHaveLength(1);
    expect(await bed.revocationAudits(connectionId)).toEqual([{ outcome: 'success', details: { reason: 'superseded_by_reconsent', revocation: 'revoked' } }]);
  });
});

describe('an exchange whose answer was lost in flight', () => {
  it('ends, on the retry that finds the code spent, with its own reason rather than invalid_grant', async () => {
    const { connectionId, authorizationId } = await bed.pendingConnection(PROVIDER);
    let answerHeld = false;
    let releaseAnswer!: () => void;
    google.switches.holdAnswer = () => {
      answerHeld = true;
      return new Promise<void>((resolve) => (releaseAnswer = resolve));
    };
    // Google spent the code; the attempt is given up on (cancelled) before its answer arrives.
    const lost = activityEnvironment({ attempt: 1 });
    const first = lost.run(activities.exchangeAuthorizationCode, { connectionId, authorizationId }).catch((error: unknown) => error);
    await eventually(() => answerHeld);
    lost.cancel('TIMED_OUT');
    await first;
    google.switches.holdAnswer = undefined;
    releaseAnswer();

    const failure = await failureOfRun(runActivity(activities.exchangeAuthorizationCode, [{ connectionId, authorizationId }], { attempt: 2 }));
    expect([failure.type, failure.nonRetryable]).toEqual([FailureType.authorizationLostInFlight, true]);
    expect(await recordedError(connectionId)).toEqual({ kind: AUTHORIZATION_LOST_IN_FLIGHT, version: 0 });
    // The lost call concerned the code: the lease keeps no mark a later refresh would mistake for its own.
    expect(await services.db.oneFirst(sql.type(z.object({ version: z.number().nullable() }))`
      SELECT unanswered_token_version AS version FROM integration_token_leases WHERE connection_id = ${connectionId}`)).toBeNull();
  });
});

describe('tokens that cannot be set aside', () => {
  it('are revoked at once all the same, and the outcome audited', async () => {
    const { connectionId, authorizationId } = await bed.pendingConnection(PROVIDER);
    await setStatus(connectionId, 'disconnecting');
    await services.db.query(sql.unsafe`
      CREATE FUNCTION refuse_unkept_tokens() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the disk is full'; END $$`);
    await services.db.query(sql.unsafe`
      CREATE TRIGGER refuse_unkept_tokens BEFORE INSERT ON unkept_provider_tokens FOR EACH ROW EXECUTE FUNCTION refuse_unkept_tokens()`);
    try {
      expect((await failureOfRun(runActivity(activities.exchangeAuthorizationCode, [{ connectionId, authorizationId }]))).type).toBe(FailureType.connectionGone);
    } finally {
      await services.db.query(sql.unsafe`DROP TRIGGER refuse_unkept_tokens ON unkept_provider_tokens`);
      await services.db.query(sql.unsafe`DROP FUNCTION refuse_unkept_tokens()`);
    }
    expect(google.liveRefreshTokens()).toEqual([]);
    expect(await bed.revocationAudits(connectionId)).toEqual([
      { outcome: 'success', details: { reason: 'disconnected_during_authorization', revocation: 'revoked', setAsideError: expect.stringContaining('the disk is full') } },
    ]);
  });
});

describe('the revocation of what a re-consent will not keep', () => {
  it('runs after the lease is given back, so a refresh never waits for it', async () => {
    const { connectionId } = await bed.activeConnection(PROVIDER);
    // Granular consent: this time the user unticks the calendar scope.
    const scopes = bed.config.google.scopes.filter((scope) => !scope.includes('calendar'));
    const authorizationId = await bed.authorize(PROVIDER, await userOf(connectionId), connectionId, scopes);
    const holdersDuringRevocation: (string | null)[] = [];
    const adapter = services.providers[PROVIDER]!;
    const watched = new Proxy(adapter, {
      get(target, property) {
        if (property === 'revoke') {
          return async (token: string) => {
            holdersDuringRevocation.push(await leaseHolder(connectionId));
            return target.revoke(token);
          };
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const watching = bed.activitiesWith({ providers: { ...services.providers, [PROVIDER]: watched } });

    const failure = await failureOfRun(runActivity(watching.exchangeAuthorizationCode, [{ connectionId, authorizationId }]));
    expect(failure.type).toBe(FailureType.authorizationRejected);
    expect(holdersDuringRevocation).toEqual([null]);
    expect(await bed.revocationAudits(connectionId)).toEqual([{ outcome: 'success', details: { reason: 'insufficient_scope', revocation: 'revoked' } }]);
    expect(await connectionStatus(connectionId)).toBe('active');
  });
});
