import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Activities, TokenState } from '../../activities';
import { AUTHORIZATION_CODE_EXPIRED, AUTHORIZATION_LOST_IN_FLIGHT, FailureType, REFRESH_TOKEN_LOST_IN_FLIGHT } from '../../activities/failure-types';
import type { connectionWorkflow } from '../../workflows/connection';
import { authorizeSignal, disconnectSignal, refreshNowUpdate, statusQuery, type AuthorizeSignal, type RefreshPolicy } from '../../workflows/connection-messages';
import { startScriptedWorker, startTimeSkippingServer, type ScriptedWorker } from '../helpers/temporal';
import { eventually } from '../helpers/eventually';

const MINUTE = 60_000;
/** The settings' defaults, as the API hands them to every connection workflow. */
const POLICY: RefreshPolicy = { marginSeconds: 300, jitterSeconds: 60, marginFraction: 0.2, minMarginSeconds: 60, triesBeforeExpiry: 6 };

type Call = { name: string; input: Record<string, unknown>; at: number; outcome: 'ok' | 'failed'; expiresAt?: number };

/** What one connection's scripted activities do; each test's connection has its own. */
interface Script {
  lifetimeMs: number;
  exchange?: (authorizationId: string) => Promise<void>;
  /** Throws for the refresh calls that fail (numbered from 0). */
  refresh?: (call: number) => void;
  /** Each refresh waits for it before it answers. */
  refreshHeld?: () => Promise<void>;
  /** Throws for the revocations of unkept tokens that fail (numbered from 0). */
  revokeUnkept?: (call: number) => void;
  /** The tokens markConnectionNeedsReauth finds stored by then (another writer moved on), if any. */
  storedMeanwhile?: (now: number) => TokenState;
  markFailed?: () => Promise<void>;
}

/**
 * A token write that waits heartbeats, as the real ones do: on the time-skipping server a held
 * activity's heartbeat timeout runs in real time, so under load a silent one would be retried.
 */
async function heartbeatingWhile(work: Promise<void> | undefined): Promise<void> {
  const context = Context.current();
  const beat = setInterval(() => context.heartbeat(), 1000);
  try {
    await work;
  } finally {
    clearInterval(beat);
  }
}

/** What a scripted activity waits on until the test releases it; `entered` says whether one has started waiting. */
function hold(): { readonly entered: boolean; wait: () => Promise<void>; release: () => void } {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let entered = false;
  return {
    get entered() {
      return entered;
    },
    wait: () => ((entered = true), released),
    release,
  };
}

/** An exchange that grants every code but `authorizationId`'s, which it refuses (once `waitFor`, when given, resolves). */
function refusingCodeOf(authorizationId: string, waitFor?: () => Promise<void>): Script['exchange'] {
  return async (exchanged) => {
    if (exchanged !== authorizationId) return;
    await waitFor?.();
    throw ApplicationFailure.nonRetryable('the code expired', FailureType.authorizationRejected);
  };
}

/**
 * The connection workflow's token rules against scripted activities on the time-skipping server:
 * a newer authorization taking over from a failed one (issue 11, defect 5), refreshes that stay
 * ahead of expiry while the provider fails often, and the reason a lost rotation leaves behind.
 * Each test leaves its workflow running (see startTimeSkippingServer for why none is terminated).
 */
describe('connection workflow: tokens', () => {
  let temporal: TestWorkflowEnvironment;
  let worker: ScriptedWorker;
  const scripts = new Map<string, Script>();
  const calls = new Map<string, Call[]>();

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    const now = () => temporal.currentTimeMs();
    const record = async (name: string, input: { connectionId: string }, outcome: Call['outcome'] = 'ok', expiresAt?: number) => {
      const list = calls.get(input.connectionId) ?? [];
      calls.set(input.connectionId, list);
      list.push({ name, input, at: await now(), outcome, ...(expiresAt === undefined ? {} : { expiresAt }) });
      return list.length;
    };
    const tokens = async (connectionId: string): Promise<TokenState> => {
      const accessTokenExpiresAt = (await now()) + scripts.get(connectionId)!.lifetimeMs;
      return { tokenVersion: calls.get(connectionId)!.length, accessTokenExpiresAt };
    };
    const activities: Partial<Activities> = {
      exchangeAuthorizationCode: async (input) => {
        const script = scripts.get(input.connectionId)!;
        try {
          await heartbeatingWhile(script.exchange?.(input.authorizationId));
        } catch (error) {
          await record('exchange', input, 'failed');
          throw error;
        }
        await record('exchange', input);
        return tokens(input.connectionId);
      },
      refreshConnectionTokens: async (input) => {
        const script = scripts.get(input.connectionId)!;
        const number = (calls.get(input.connectionId) ?? []).filter((call) => call.name === 'refresh').length;
        await heartbeatingWhile(script.refreshHeld?.());
        try {
          script.refresh?.(number);
        } catch (error) {
          await record('refresh', input, 'failed');
          throw error;
        }
        const state = await tokens(input.connectionId);
        await record('refresh', input, 'ok', state.accessTokenExpiresAt);
        return state;
      },
      setUpConnection: async (input) => (await record('setUp', input), { renewSubscriptionsAt: null, syncIntervalSeconds: null }),
      markConnectionNeedsReauth: async (input) => {
        await record('needsReauth', input);
        return scripts.get(input.connectionId)!.storedMeanwhile?.(await now());
      },
      auditFailedAuthorization: async (input) => void (await record('failedAuthorization', input)),
      markConnectionFailed: async (input) => {
        await scripts.get(input.connectionId)!.markFailed?.();
        await record('failed', input);
      },
      revokeUnkeptTokens: async (input) => {
        const number = (calls.get(input.connectionId) ?? []).filter((call) => call.name === 'revokeUnkept').length;
        try {
          scripts.get(input.connectionId)!.revokeUnkept?.(number);
        } catch (error) {
          await record('revokeUnkept', input, 'failed');
          throw error;
        }
        await record('revokeUnkept', input);
      },
      stopConnectionSubscriptions: async (input) => void (await record('stopSubscriptions', input)),
      revokeConnectionUpstream: async (input) => (await record('revoke', input), 'revoked' as const),
      wipeDisconnectedConnection: async (input) => void (await record('wipe', input)),
    };
    worker = await startScriptedWorker({ temporal, activities, taskQueuePrefix: 'connection-tokens' });
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.teardown();
  });

  async function connect(script: Script, authorizationId = randomUUID(), revocationWindowSeconds?: number, codeExpiresAt?: number) {
    const connectionId = randomUUID();
    scripts.set(connectionId, script);
    const handle = await temporal.client.workflow.signalWithStart<typeof connectionWorkflow, [AuthorizeSignal]>('connectionWorkflow', {
      workflowId: `connection:airbnb:${connectionId}`,
      taskQueue: worker.taskQueue,
      args: [{ connectionId, provider: 'airbnb', userId: randomUUID(), refreshPolicy: POLICY, ...(revocationWindowSeconds ? { revocationWindowSeconds } : {}) }],
      signal: authorizeSignal,
      signalArgs: [{ authorizationId, ...(codeExpiresAt === undefined ? {} : { codeExpiresAt }) }],
    });
    return { connectionId, handle, calls: () => calls.get(connectionId) ?? [] };
  }

  /** The patches a workflow's history carries markers of. */
  async function patchesOf(handle: WorkflowHandle): Promise<string[]> {
    const { events } = await handle.fetchHistory();
    return (events ?? [])
      .filter((event) => event.markerRecordedEventAttributes?.markerName === 'core_patch')
      .map((event) => JSON.parse(Buffer.from(event.markerRecordedEventAttributes!.details!['patch-data']!.payloads![0]!.data!).toString()) as { id: string })
      .map((patch) => patch.id);
  }

  it('an exchange that fails while a newer callback waits gives way to the newer code instead of failing the connection', async () => {
    const firstExchange = hold();
    const [first, second] = [randomUUID(), randomUUID()];
    const { handle, calls: made } = await connect(
      {
        lifetimeMs: 24 * 60 * MINUTE,
        exchange: refusingCodeOf(first, firstExchange.wait),
      },
      first,
    );
    // The user gave up waiting and authorized again: the API answered the second callback with 202.
    await eventually(async () => (await handle.describe()).status.name === 'RUNNING' && (await handle.query(statusQuery)).status === 'pending');
    await handle.signal(authorizeSignal, { authorizationId: second });
    firstExchange.release();

    const state = await eventually(async () => {
      const current = await handle.query(statusQuery);
      return current.status === 'active' ? current : undefined;
    });
    expect(state.lastError).toBeUndefined();
    const exchanges = made().filter((call) => call.name === 'exchange');
    expect(exchanges.map((call) => [call.input.authorizationId, call.outcome])).toEqual([
      [first, 'failed'],
      [second, 'ok'],
    ]);
    expect(made().map((call) => call.name)).not.toContain('failed');
    // The connection lives on, but the failed authorization is on record.
    expect(made().filter((call) => call.name === 'failedAuthorization').map((call) => call.input.reason)).toEqual([FailureType.authorizationRejected]);
    expect(await patchesOf(handle)).toContain('newer-authorization-after-failure');
    expect(await patchesOf(handle)).toContain('audit-failed-authorization');
  });

  it('a newer authorization that arrives while the connection is being marked failed is taken, not lost', async () => {
    const marking = hold();
    const [first, second] = [randomUUID(), randomUUID()];
    const { handle, calls: made } = await connect(
      {
        lifetimeMs: 24 * 60 * MINUTE,
        exchange: refusingCodeOf(first),
        markFailed: marking.wait,
      },
      first,
    );
    // Only once the workflow handled the failure: a signal in the same activation would be taken before marking anything.
    await eventually(() => marking.entered);
    // The callback was answered 202 while the workflow was marking the connection failed.
    await handle.signal(authorizeSignal, { authorizationId: second });
    marking.release();

    const state = await eventually(async () => {
      const current = await handle.query(statusQuery);
      return current.status === 'active' ? current : undefined;
    });
    expect(state.tokenVersion).toBeGreaterThan(0);
    expect(made().filter((call) => call.name === 'exchange').map((call) => [call.input.authorizationId, call.outcome])).toEqual([
      [first, 'failed'],
      [second, 'ok'],
    ]);
    expect(made().filter((call) => call.name === 'failed')).toHaveLength(1);
    expect(made().map((call) => call.name)).not.toContain('failedAuthorization');
    expect(await patchesOf(handle)).toContain('newer-authorization-after-marked-failed');
    expect((await handle.describe()).status.name).toBe('RUNNING');
  });

  it('a newer authorization that fails too leaves the connection failed, with each failure named by its code', async () => {
    const marking = hold();
    const [first, second] = [randomUUID(), randomUUID()];
    const { handle, calls: made } = await connect(
      {
        lifetimeMs: 24 * 60 * MINUTE,
        exchange: async () => {
          throw ApplicationFailure.nonRetryable('the code expired', FailureType.authorizationRejected);
        },
        markFailed: () => (marking.entered ? Promise.resolve() : marking.wait()),
      },
      first,
    );
    await eventually(() => marking.entered);
    await handle.signal(authorizeSignal, { authorizationId: second });
    marking.release();

    expect(await handle.result()).toEqual({ status: 'failed' });
    expect(made().filter((call) => call.name === 'failed').map((call) => call.input.authorizationId)).toEqual([first, second]);
    expect(made().map((call) => call.name)).not.toContain('failedAuthorization');
  });

  it('a callback that arrives while a re-consent waits behind a refresh is exchanged after it, under its patch', async () => {
    const refresh = hold();
    const { handle, calls: made } = await connect({
      lifetimeMs: 24 * 60 * MINUTE,
      refreshHeld: refresh.wait,
    });
    await eventually(async () => (await handle.query(statusQuery)).status === 'active');
    const refreshed = handle.executeUpdate(refreshNowUpdate);
    await eventually(() => refresh.entered);
    const reconsent = randomUUID();
    const newer = randomUUID();
    await handle.signal(authorizeSignal, { authorizationId: reconsent });
    // The loop took the re-consent and waits behind the refresh for its turn to write tokens.
    await eventually(async () => (await handle.query(statusQuery)).pendingAuthorizationId === reconsent);
    await handle.signal(authorizeSignal, { authorizationId: newer });
    refresh.release();
    await refreshed;

    await eventually(() => made().filter((call) => call.name === 'exchange').length === 3);
    expect(made().filter((call) => call.name === 'exchange').map((call) => call.input.authorizationId).slice(1)).toEqual([reconsent, newer]);
    // Runs from before the patch dropped the newer callback; only histories that carry its marker take it.
    expect(await patchesOf(handle)).toContain('newer-authorization-while-exchange-waits');
  });

  it('tokens an exchange will not keep are revoked beside the token lifecycle: an outage of the revocation does not delay a due refresh', { timeout: 60_000 }, async () => {
    const lifetimeMs = 4 * MINUTE;
    const { handle, calls: made } = await connect({
      lifetimeMs,
      revokeUnkept: () => {
        throw ApplicationFailure.retryable('Airbnb revocations answer 503', FailureType.providerUnavailable);
      },
    });
    await eventually(() => made().some((call) => call.name === 'exchange'));
    await temporal.sleep(20 * MINUTE);

    const revocations = made().filter((call) => call.name === 'revokeUnkept');
    expect(revocations.length).toBeGreaterThanOrEqual(3); // still retried in the background
    expect(revocations[0]!.input).toEqual({ connectionId: made()[0]!.input.connectionId, revocationWindowSeconds: 2 * 3600 });
    const tokens = made().filter((call) => (call.name === 'exchange' || call.name === 'refresh') && call.outcome === 'ok');
    expect(tokens.length).toBeGreaterThanOrEqual(5);
    for (let index = 1; index < tokens.length; index++) expect(tokens[index]!.at).toBeLessThan(tokens[index - 1]!.at + lifetimeMs);
    expect((await handle.query(statusQuery)).status).toBe('active');
  });

  it('an exchange that fails has what it obtained revoked before the connection ends as failed', async () => {
    const { handle, calls: made } = await connect({
      lifetimeMs: 24 * 60 * MINUTE,
      exchange: async () => {
        throw ApplicationFailure.nonRetryable('the user did not grant vr', FailureType.authorizationRejected);
      },
      revokeUnkept: (call) => {
        if (call < 2) throw ApplicationFailure.retryable('Airbnb revocations answer 503', FailureType.providerUnavailable);
      },
    });
    expect(await handle.result()).toEqual({ status: 'failed' });
    // The revocation runs beside the marking, and the workflow ends only once it has an answer.
    expect(made().map((call) => call.name).sort()).toEqual(['exchange', 'failed', 'revokeUnkept', 'revokeUnkept', 'revokeUnkept']);
    expect(made().at(-1)).toMatchObject({ name: 'revokeUnkept', outcome: 'ok' });
  });

  it('a disconnect revokes unkept tokens before it wipes, waits no longer than the revocation window, and never fails on them', { timeout: 60_000 }, async () => {
    const windowSeconds = 10 * 60;
    const { handle, calls: made } = await connect(
      {
        lifetimeMs: 24 * 60 * MINUTE,
        revokeUnkept: (call) => {
          if (call > 0) throw ApplicationFailure.retryable('Airbnb revocations answer 503', FailureType.providerUnavailable);
        },
      },
      randomUUID(),
      windowSeconds,
    );
    await eventually(() => made().some((call) => call.name === 'revokeUnkept'));
    await handle.signal(disconnectSignal, { requestedBy: { type: 'user' } });

    expect(await handle.result()).toEqual({ status: 'disconnected', revocation: 'revoked' });
    const names = made().map((call) => call.name);
    const tries = made().filter((call) => call.name === 'revokeUnkept').slice(1);
    expect(names.slice(names.indexOf('revoke'))).toEqual(['revoke', ...tries.map(() => 'revokeUnkept'), 'wipe']);
    expect(tries.every((call) => call.input.revocationWindowSeconds === windowSeconds)).toBe(true);
    // Retried through the outage for the window, then given up on, and the disconnect finished.
    const waited = made().find((call) => call.name === 'wipe')!.at - tries[0]!.at;
    expect(waited).toBeGreaterThanOrEqual(windowSeconds * 1000);
    expect(waited).toBeLessThan(windowSeconds * 1000 + 15 * MINUTE);
  });

  it('with 30% of token calls failing for ten minutes, every short-lived token is refreshed before it expires, and not in a loop', { timeout: 120_000 }, async () => {
    const lifetimeMs = 2 * MINUTE;
    // Failures come in bursts of four (4 of every 13 calls, 31%): the case a doubling backoff loses.
    const { handle, calls: made } = await connect({
      lifetimeMs,
      refresh: (call) => {
        if (call % 13 >= 1 && call % 13 <= 4) throw ApplicationFailure.retryable('Airbnb answered 503', FailureType.providerUnavailable);
      },
    });
    await eventually(() => made().some((call) => call.name === 'exchange'));
    const startedAt = made()[0]!.at;
    await temporal.sleep(10 * MINUTE);

    const tokens = made().filter((call) => (call.name === 'exchange' || call.name === 'refresh') && call.outcome === 'ok');
    const refreshCalls = made().filter((call) => call.name === 'refresh');
    expect(made().at(-1)!.at - startedAt).toBeGreaterThanOrEqual(9 * MINUTE);
    expect(refreshCalls.filter((call) => call.outcome === 'failed').length / refreshCalls.length).toBeGreaterThanOrEqual(0.25);
    for (let index = 1; index < tokens.length; index++) {
      const previousExpiry = tokens[index - 1]!.at + lifetimeMs;
      // Before the token it replaces expired ...
      expect(tokens[index]!.at).toBeLessThan(previousExpiry);
      // ... and not before half of its life was over.
      expect(tokens[index]!.at - tokens[index - 1]!.at).toBeGreaterThanOrEqual(lifetimeMs / 2 - 1000);
    }
    expect(tokens.length).toBeLessThanOrEqual((10 * MINUTE) / (lifetimeMs / 2) + 2);
    expect((await handle.query(statusQuery)).status).toBe('active');
  });

  it('an authorization code lost in flight fails the connection with that exact reason', async () => {
    const { handle, calls: made } = await connect({
      lifetimeMs: 24 * 60 * MINUTE,
      exchange: () => {
        throw ApplicationFailure.nonRetryable('the code was refused after a lost answer', FailureType.authorizationLostInFlight);
      },
    });
    expect(await handle.result()).toEqual({ status: 'failed' });
    expect(made().filter((call) => call.name === 'failed').map((call) => call.input.reason)).toEqual([AUTHORIZATION_LOST_IN_FLIGHT]);
    expect((await handle.query(statusQuery)).lastError?.kind).toBe(AUTHORIZATION_LOST_IN_FLIGHT);
  });

  it('hands the exchange the callback\'s code deadline, and a code it refuses as expired fails the connection at once with that reason', async () => {
    const codeExpiresAt = (await temporal.currentTimeMs()) + 10 * MINUTE;
    const { handle, calls: made } = await connect(
      {
        lifetimeMs: 24 * 60 * MINUTE,
        exchange: () => {
          throw ApplicationFailure.nonRetryable('the authorization code expired before it could be exchanged; connect again', FailureType.authorizationCodeExpired);
        },
      },
      randomUUID(),
      undefined,
      codeExpiresAt,
    );
    expect(await handle.result()).toEqual({ status: 'failed' });
    const exchanges = made().filter((call) => call.name === 'exchange');
    expect(exchanges.map((call) => call.input.codeExpiresAt)).toEqual([codeExpiresAt]);
    expect(made().filter((call) => call.name === 'failed').map((call) => call.input.reason)).toEqual([AUTHORIZATION_CODE_EXPIRED]);
    expect((await handle.query(statusQuery)).lastError).toMatchObject({ kind: AUTHORIZATION_CODE_EXPIRED, message: expect.stringContaining('connect again') });
  });

  it('a refresh token lost in flight ends in needs_reauth with that exact reason', async () => {
    const { handle, calls: made } = await connect({
      lifetimeMs: 2 * MINUTE,
      refresh: () => {
        throw ApplicationFailure.nonRetryable('every refresh token we hold was refused after a lost answer', FailureType.refreshTokenLostInFlight);
      },
    });
    await eventually(() => made().some((call) => call.name === 'exchange'));
    await temporal.sleep(2 * MINUTE);
    const state = await eventually(async () => {
      const current = await handle.query(statusQuery);
      return current.status === 'needs_reauth' ? current : undefined;
    });
    expect(state.lastError?.kind).toBe(REFRESH_TOKEN_LOST_IN_FLIGHT);
    expect(made().filter((call) => call.name === 'needsReauth').map((call) => call.input.reason)).toEqual([REFRESH_TOKEN_LOST_IN_FLIGHT]);
  });

  it('a refusal of tokens that another writer has replaced meanwhile leaves the connection active on the newer ones', async () => {
    const lifetimeMs = 24 * 60 * MINUTE;
    const refused = { version: 0 };
    const { handle, calls: made } = await connect({
      lifetimeMs,
      refresh: () => {
        throw ApplicationFailure.nonRetryable('invalid_grant', FailureType.grantRevoked);
      },
      // An earlier attempt that lost its lease stored its answer just before the refusal was recorded.
      storedMeanwhile: (now) => ({ tokenVersion: refused.version + 1, accessTokenExpiresAt: now + lifetimeMs }),
    });
    await eventually(async () => (await handle.query(statusQuery)).status === 'active');
    refused.version = (await handle.query(statusQuery)).tokenVersion;
    const refusedVersion = refused.version;

    expect(await handle.executeUpdate(refreshNowUpdate)).toMatchObject({ tokenVersion: refusedVersion + 1 });
    const state = await handle.query(statusQuery);
    expect(state).toMatchObject({ status: 'active', tokenVersion: refusedVersion + 1 });
    expect(state.lastError).toBeUndefined();
    // needs_reauth was asked for only at the version the refusal was about.
    expect(made().filter((call) => call.name === 'needsReauth').map((call) => call.input)).toEqual([expect.objectContaining({ reason: 'invalid_grant', expectedVersion: refusedVersion })]);
    expect(await patchesOf(handle)).toContain('needs-reauth-at-token-version');
  });
});
