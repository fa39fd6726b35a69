// A fake Microsoft identity platform + Graph (Outlook calendar) for tests and sandbox mode. Binds to
// 127.0.0.1 only. Status codes and error bodies (AADSTS codes, Graph's error shape) mirror the real ones.
import Fastify, { type FastifyRequest } from 'fastify';
import formbody from '@fastify/formbody';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { FakeCalendars, type FakeEventInput } from './microsoft-calendar';
import { registerFakeGraph, type FakeGraphCall } from './microsoft-graph';
import { AADSTS, MicrosoftTokenStore, type AadstsCode, type IssuedTokens, type Refusal } from './microsoft-tokens';
import { paramsOf, type Params } from './http-params';
import type { TokenEndpointFaults } from './token-endpoint-faults';

export interface FakeMicrosoftOptions {
  clientId: string;
  clientSecret: string;
  port?: number;
  clock?: () => number;
  accessTokenLifetimeSeconds?: number;
  /** How long a refresh token keeps working after its successor was issued (Microsoft: until it expires). */
  rotationGraceSeconds?: number;
  /** Chaos scenarios only: outages and lost answers of the token endpoint, and its record of every refresh. */
  faults?: TokenEndpointFaults;
}

export interface FakeIdentityCall {
  endpoint: 'authorize' | 'token';
  at: number;
  status: number;
  grantType?: string;
  error?: string;
  aadsts?: number;
  /** Refreshes: whether the client presented the newest refresh token of the account. */
  presented?: 'newest' | 'superseded' | 'unknown';
}

export type FakeMicrosoftCall = FakeIdentityCall | FakeGraphCall;

export interface FakeMicrosoftSwitches {
  /** Refreshes answer invalid_grant with this AADSTS code (70008, 700082, 50173, …). */
  invalidGrant: AadstsCode | false;
  /** The token endpoint answers AADSTS7000222 (our client secret has expired). */
  clientSecretExpired: boolean;
  delayMs: number;
  /** While set, each token request waits, after the fake acted on it, for the promise it returns: a test's gate on the answer. */
  holdAnswer: (() => Promise<void>) | undefined;
  failNext(count: number, status?: number, target?: 'token' | 'graph'): void;
  /** Every delta link handed out so far gets 410 Gone. */
  deltaGone(): void;
  /** Every subscription expires now (as if renewals had stopped). */
  expireSubscriptions(): void;
  /** The next `count` subscription creations succeed at Graph but answer 504, as when the answer is lost on the way. */
  loseCreateAnswers(count: number): void;
}

export async function startFakeMicrosoft(options: FakeMicrosoftOptions) {
  const clock = options.clock ?? Date.now;
  const tenantId = randomUUID();
  const calls: FakeMicrosoftCall[] = [];
  const accounts: string[] = [];
  const preparedAccounts: string[] = [];
  const failures = { token: { count: 0, status: 503 }, graph: { count: 0, status: 503 } };
  let lostCreateAnswers = 0;
  let url = '';

  // close() drops keep-alive connections still open: a test's teardown need not wait out their timeout.
  const app = Fastify({ logger: false, forceCloseConnections: true });
  await app.register(formbody);
  const tokens = new MicrosoftTokenStore(clock, {
    clientId: options.clientId,
    issuer: 'https://login.microsoftonline.com',
    tenantId,
    accessTokenLifetimeSeconds: options.accessTokenLifetimeSeconds ?? 3599,
    rotationGraceMs: (options.rotationGraceSeconds ?? 24 * 3600) * 1000,
  });
  const calendars = new FakeCalendars(clock);

  const switches: FakeMicrosoftSwitches = {
    invalidGrant: false,
    clientSecretExpired: false,
    delayMs: 0,
    holdAnswer: undefined,
    failNext(count, status = 503, target = 'token') {
      if (!Number.isInteger(count) || count < 0) throw new RangeError('failNext count must be a non-negative integer');
      if (status !== 429 && (status < 500 || status > 599)) throw new RangeError('failNext status must be 429 or 5xx');
      failures[target] = { count, status };
    },
    deltaGone: () => calendars.forgetDeltaTokens(),
    expireSubscriptions: () => graph.expireSubscriptions(),
    loseCreateAnswers(count) {
      if (!Number.isInteger(count) || count < 0) throw new RangeError('loseCreateAnswers count must be a non-negative integer');
      lostCreateAnswers = count;
    },
  };

  async function disturbance(target: 'token' | 'graph'): Promise<number | undefined> {
    if (switches.delayMs > 0) await sleep(switches.delayMs);
    if (failures[target].count === 0) return undefined;
    failures[target].count -= 1;
    return failures[target].status;
  }

  /** The identity platform's error body, trace lines and all. */
  function aadError(code: AadstsCode, vars: Record<string, string> = {}) {
    const entry = AADSTS[code];
    const message = entry.message.replace(/\{(\w+)\}/g, (_, name: string) => vars[name] ?? '');
    const [traceId, correlationId] = [randomUUID(), randomUUID()];
    const timestamp = `${new Date(clock()).toISOString().slice(0, 19).replace('T', ' ')}Z`;
    return {
      status: entry.status,
      aadsts: code,
      body: {
        error: entry.error,
        error_description: `AADSTS${code}: ${message}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlationId}\r\nTimestamp: ${timestamp}`,
        error_codes: [code],
        timestamp,
        trace_id: traceId,
        correlation_id: correlationId,
      },
    };
  }

  app.get('/common/oauth2/v2.0/authorize', async (request, reply) => {
    const q = paramsOf(request.query);
    const problem =
      q.client_id !== options.clientId ? 'unauthorized_client'
      : !q.redirect_uri || !URL.canParse(q.redirect_uri) ? 'invalid_request'
      : q.response_type !== 'code' || !q.scope?.trim() ? 'invalid_request'
      : q.code_challenge !== undefined && q.code_challenge_method !== 'S256' ? 'invalid_request'
      : q.response_mode !== undefined && q.response_mode !== 'query' ? 'invalid_request'
      : undefined;
    calls.push({ endpoint: 'authorize', at: clock(), status: problem ? 400 : 302, ...(problem ? { error: problem } : {}) });
    if (problem) return reply.code(400).type('text/html; charset=utf-8').send(`<!doctype html><title>Sign in</title><p>Sorry, but we're having trouble signing you in. (${problem})</p>`);
    // Every authorization signs in a new account (or one a test prepared), so each connection has its own calendar.
    const oid = preparedAccounts.shift() ?? randomUUID();
    accounts.push(oid);
    const code = tokens.issueCode({ oid, redirectUri: q.redirect_uri!, scope: q.scope!.trim(), ...(q.code_challenge ? { challenge: q.code_challenge } : {}) });
    const target = new URL(q.redirect_uri!);
    target.searchParams.set('code', code);
    if (q.state !== undefined) target.searchParams.set('state', q.state);
    return reply.redirect(target.toString(), 302);
  });

  async function tokenAnswer(request: FastifyRequest, body: Params) {
    const basic = /^basic (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
    const [basicId, basicSecret] = basic ? Buffer.from(basic, 'base64').toString('utf8').split(':').map(decodeURIComponent) : [];
    const clientId = body.client_id ?? basicId;
    const clientSecret = body.client_secret ?? basicSecret;
    if (!clientId) return aadError(900144, { parameter: 'client_id' });
    if (clientId !== options.clientId) return aadError(700016, { clientId });
    if (switches.clientSecretExpired) return aadError(7000222, { clientId });
    if (clientSecret !== options.clientSecret) return aadError(7000215, { clientId });
    let outcome: IssuedTokens | Refusal;
    if (body.grant_type === 'authorization_code') {
      if (!body.code) return aadError(900144, { parameter: 'code' });
      outcome = await tokens.redeemCode(body.code, body.redirect_uri ?? '', body.code_verifier);
    } else if (body.grant_type === 'refresh_token') {
      if (!body.refresh_token) return aadError(900144, { parameter: 'refresh_token' });
      outcome = switches.invalidGrant ? { aadsts: switches.invalidGrant } : await tokens.refresh(body.refresh_token);
    } else {
      return body.grant_type ? aadError(70003, { grantType: body.grant_type }) : aadError(900144, { parameter: 'grant_type' });
    }
    if ('aadsts' in outcome) return aadError(outcome.aadsts, outcome.vars);
    return {
      status: 200,
      body: {
        token_type: 'Bearer',
        scope: outcome.scope,
        expires_in: outcome.expiresIn,
        ext_expires_in: outcome.expiresIn,
        access_token: outcome.accessToken,
        refresh_token: outcome.refreshToken,
        ...(outcome.idToken ? { id_token: outcome.idToken } : {}),
      },
    };
  }

  app.post('/common/oauth2/v2.0/token', async (request, reply) => {
    const at = clock();
    const body = paramsOf(request.body);
    const presented = body.refresh_token ? tokens.generation(body.refresh_token) : undefined;
    const refreshing = body.grant_type === 'refresh_token' ? body.refresh_token : undefined;
    if (options.faults && (await options.faults.outage(request, reply, aadError(90033).body, refreshing !== undefined, refreshing))) return reply;
    const failure = await disturbance('token');
    const answer: { status: number; body: object; aadsts?: number } = failure === undefined ? await tokenAnswer(request, body) : { ...aadError(90033), status: failure };
    if (switches.holdAnswer) await switches.holdAnswer();
    const error = (answer.body as { error?: string }).error;
    calls.push({
      endpoint: 'token',
      at,
      status: answer.status,
      ...(body.grant_type ? { grantType: body.grant_type } : {}),
      ...(error ? { error } : {}),
      ...(answer.aadsts ? { aadsts: answer.aadsts } : {}),
      ...(presented ? { presented } : {}),
    });
    const lost = options.faults?.tokenAnswered(at, answer, accountOf, refreshing);
    if (lost) {
      await options.faults!.neverAnswer(request, reply, lost);
      return reply;
    }
    return reply.code(answer.status).header('cache-control', 'no-store').send(answer.body);
  });

  /** The account (its oid) a live access token belongs to. */
  function accountOf(accessToken: string): string | undefined {
    const account = tokens.accessTokenAccount(accessToken);
    return typeof account === 'object' ? account.oid : undefined;
  }

  const graph = registerFakeGraph(app, () => url, {
    clock,
    tenantId,
    calendars,
    account: (authorization) => {
      const token = /^Bearer (\S+)$/i.exec(authorization ?? '')?.[1];
      return token ? tokens.accessTokenAccount(token) : undefined;
    },
    disturbance: () => disturbance('graph'),
    loseCreateAnswer: () => lostCreateAnswers > 0 && lostCreateAnswers-- > 0,
    record: (call) => calls.push(call),
  });

  await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

  return {
    url,
    authorizeUrl: `${url}/common/oauth2/v2.0/authorize`,
    tokenUrl: `${url}/common/oauth2/v2.0/token`,
    graphUrl: `${url}/v1.0`,
    switches,
    calls,
    /** Every secret the fake issued or was given: tests look for them where none may be. */
    issuedSecrets: () => [...tokens.issuedSecrets(), ...graph.clientStates(), options.clientSecret],
    accounts: () => [...accounts],
    /** An account whose calendar the test can fill before the next authorization signs it in. */
    prepareAccount() {
      const oid = randomUUID();
      preparedAccounts.push(oid);
      return oid;
    },
    latestAccount: () => accounts.at(-1),
    liveRefreshTokens: (oid?: string) => tokens.liveRefreshTokens(oid),
    newestRefreshToken: (oid: string) => tokens.newestRefreshToken(oid),
    revokeGrants: (oid: string) => tokens.revokeGrants(oid),
    addEvent: (oid: string, event: FakeEventInput) => calendars.addEvent(oid, event),
    updateEvent: (oid: string, id: string, change: Partial<FakeEventInput>) => calendars.updateEvent(oid, id, change),
    deleteEvent: (oid: string, id: string) => calendars.deleteEvent(oid, id),
    liveEvents: (oid: string) => calendars.liveEvents(oid),
    subscriptions: graph.subscriptions,
    liveSubscriptions: graph.liveSubscriptions,
    notify: graph.notify,
    sendLifecycleEvent: graph.sendLifecycleEvent,
    revokeSignInSessionsCalls: () => calls.filter((call) => call.endpoint === 'revokeSignInSessions').length,
    reset() {
      calls.length = 0;
      Object.assign(switches, { invalidGrant: false, clientSecretExpired: false, delayMs: 0, holdAnswer: undefined });
      failures.token = { count: 0, status: 503 };
      failures.graph = { count: 0, status: 503 };
      lostCreateAnswers = 0;
    },
    close: () => app.close(),
  };
}

export type FakeMicrosoft = Awaited<ReturnType<typeof startFakeMicrosoft>>;
