// A fake Google OAuth + Calendar server for tests and sandbox mode. Binds to 127.0.0.1 only.
// Status codes and error bodies mirror real Google so client code is exercised as in production.
// Calendar (google-calendar-api.ts), push channels (google-push.ts) and signing keys with the RISC
// transmitter (google-risc.ts) are modules of their own on the same server.
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import formbody from '@fastify/formbody';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { FakeCalendarApi, type CalendarApiSwitches, type FakeCalendar } from './google-calendar-api';
import { FakePushChannels, type FakeChannel, type PushDelivery } from './google-push';
import { FakeGoogleKeys, GOOGLE_RISC_ISSUER, type RiscEventName, type SecurityEventDelivery, type SecurityEventOptions } from './google-risc';
import { clientCredentials, errorPage } from './google-oauth-http';
import { paramsOf, type Params } from './http-params';
import { GoogleTokenStore, newGoogleAccountId, type IssuedTokens } from './google-tokens';
import type { TokenEndpointFaults } from './token-endpoint-faults';

export interface FakeGoogleOptions {
  clientId: string;
  clientSecret: string;
  port?: number;
  clock?: () => number;
  accessTokenLifetimeSeconds?: number;
  logger?: boolean;
  /**
   * As real Google does: revoking any token ends every grant of that account to this client. Off by
   * default, where a revocation ends only the consent the token came from.
   */
  revocationEndsAccountGrants?: boolean;
  /** Chaos scenarios only: outages and lost answers of the token endpoint, and its record of every refresh. */
  faults?: TokenEndpointFaults;
}

export interface FakeGoogleCall {
  endpoint: 'authorize' | 'token' | 'revoke' | 'calendarList' | 'eventsList' | 'eventsWatch' | 'channelsStop';
  at: number;
  status: number;
  grantType?: string;
  error?: string;
  accessTokenExpired?: boolean;
  /** Google acted on the call, but its answer never reached the caller (the loseNextWatchAnswers switch). */
  answerLost?: boolean;
  /** A granted refresh: the Google account, and when the access token it replaces was issued and expires. */
  account?: string;
  replaces?: { issuedAt: number; expiresAt: number };
}

export interface FakeGoogleSwitches {
  invalidGrant: boolean;
  rotateRefreshTokens: boolean;
  delayMs: number;
  /** While set, each token request waits, after the fake acted on it, for the promise it returns: a test's gate on the answer. */
  holdAnswer: (() => Promise<void>) | undefined;
  /** Token and revocation endpoints only; the Calendar API has its own in `calendar`. */
  failNext(count: number, status?: number): void;
  /** While set, every revocation is refused with this HTTP status and OAuth error (e.g. 401 `invalid_client`). */
  refuseRevocations: { status: number; error: string } | undefined;
  calendar: CalendarApiSwitches;
}

export interface FakeGoogle {
  url: string;
  authorizeUrl: string;
  tokenUrl: string;
  revokeUrl: string;
  calendarApiUrl: string;
  /** Google's key set for id_tokens and security event tokens (GOOGLE_RISC_JWKS_URL). */
  riscJwksUrl: string;
  riscIssuer: string;
  switches: FakeGoogleSwitches;
  calls: FakeGoogleCall[];
  /** Every token and code it issued, every channel token it was given, and the client secret. */
  issuedSecrets(): string[];
  /** The next authorizations are approved by this Google account (`sub`); without it, each by a new one. */
  signInAs(account: string | undefined): void;
  /** The primary calendar of a Google account, for the test to edit. */
  calendar(account: string): FakeCalendar;
  channels(): FakeChannel[];
  liveChannels(): FakeChannel[];
  expireChannel(channelId: string): void;
  notify(channelId?: string): Promise<PushDelivery[]>;
  redeliver(channelId: string, messageNumber: number): Promise<PushDelivery>;
  registerRiscReceiver(url: string): void;
  sendSecurityEvent(account: string, event: RiscEventName, options?: SecurityEventOptions): Promise<SecurityEventDelivery>;
  liveRefreshTokens(): string[];
  isRevoked(token: string): boolean;
  revokeAllGrants(): void;
  reset(): void;
  close(): Promise<void>;
}

interface Answer {
  status: number;
  body: object;
  error?: string;
  refreshed?: Pick<FakeGoogleCall, 'account' | 'replaces'>;
}

const EXPIRED_OR_REVOKED = 'Token has been expired or revoked.';

function oauthError(status: number, error: string, description?: string): Answer {
  return { status, error, body: description === undefined ? { error } : { error, error_description: description } };
}

// Google adds an id_token whenever the grant includes `openid`.
async function tokenBody(tokens: IssuedTokens, keys: FakeGoogleKeys): Promise<object> {
  return {
    access_token: tokens.accessToken,
    expires_in: tokens.expiresIn,
    ...(tokens.refreshToken === undefined ? {} : { refresh_token: tokens.refreshToken }),
    scope: tokens.scope,
    token_type: 'Bearer',
    ...(tokens.scope.split(' ').includes('openid') ? { id_token: await keys.idToken(tokens.account) } : {}),
  };
}

export async function startFakeGoogle(options: FakeGoogleOptions): Promise<FakeGoogle> {
  const clock = options.clock ?? Date.now;
  const tokens = new GoogleTokenStore(clock, options.accessTokenLifetimeSeconds ?? 3599);
  const calls: FakeGoogleCall[] = [];
  let pendingFailures = { count: 0, status: 503 };
  let signedInAccount: string | undefined;
  const keys = await FakeGoogleKeys.create(options.clientId, clock);
  const calendarApi = new FakeCalendarApi(tokens, clock, calls);
  const push = new FakePushChannels(calendarApi, clock, () => url);

  const switches: FakeGoogleSwitches = {
    invalidGrant: false,
    rotateRefreshTokens: false,
    delayMs: 0,
    holdAnswer: undefined,
    refuseRevocations: undefined,
    failNext(count: number, status = 503) {
      if (!Number.isInteger(count) || count < 0) throw new RangeError('failNext count must be a non-negative integer');
      if (status !== 429 && (status < 500 || status > 599)) throw new RangeError('failNext status must be 429 or 5xx');
      pendingFailures = { count, status };
    },
    calendar: calendarApi.switches,
  };

  // Request logs carry only method and path: query strings and headers may hold codes or tokens.
  // close() drops keep-alive connections still open: a test's teardown need not wait out their timeout.
  const app = Fastify({
    logger: options.logger ? { serializers: { req: (req) => ({ method: req.method, path: req.url.split('?')[0] }) } } : false,
    forceCloseConnections: true,
  });
  await app.register(formbody);

  function validateAuthorize(q: Params): { error: string; detail: string } | undefined {
    if (q.client_id !== options.clientId) return { error: 'invalid_client', detail: 'The OAuth client was not found.' };
    if (q.redirect_uri === undefined || !URL.canParse(q.redirect_uri)) {
      return { error: 'invalid_request', detail: 'Missing or invalid required parameter: redirect_uri' };
    }
    if (q.response_type !== 'code') return { error: 'unsupported_response_type', detail: 'Only response_type=code is supported.' };
    if (q.scope === undefined || q.scope.trim() === '') return { error: 'invalid_request', detail: 'Missing required parameter: scope' };
    // RFC 7636 makes "plain" the default method, so a challenge without a method is refused too.
    if (q.code_challenge !== undefined && q.code_challenge_method !== 'S256') {
      return { error: 'invalid_request', detail: 'Invalid code_challenge_method.' };
    }
    return undefined;
  }

  app.get('/o/oauth2/v2/auth', async (request, reply) => {
    const at = clock();
    const q = paramsOf(request.query);
    const problem = validateAuthorize(q);
    if (problem) {
      calls.push({ endpoint: 'authorize', at, status: 400, error: problem.error });
      return reply.code(400).type('text/html; charset=utf-8').send(errorPage(problem.error, problem.detail));
    }
    const redirectUri = q.redirect_uri as string;
    const scope = q.scope as string;
    const code = tokens.issueCode({
      redirectUri,
      scope,
      ...(q.code_challenge === undefined ? {} : { challenge: q.code_challenge }),
      offline: q.access_type === 'offline',
      account: signedInAccount ?? newGoogleAccountId(),
    });
    const target = new URL(redirectUri);
    if (q.state !== undefined) target.searchParams.set('state', q.state);
    target.searchParams.set('code', code);
    target.searchParams.set('scope', scope);
    calls.push({ endpoint: 'authorize', at, status: 302 });
    return reply.redirect(target.toString(), 302);
  });

  async function tokenAnswer(request: FastifyRequest, body: Params): Promise<Answer> {
    const client = clientCredentials(request, body);
    if (client.id === undefined) return oauthError(400, 'invalid_request', 'Could not determine client ID from request.');
    if (client.id !== options.clientId) return oauthError(401, 'invalid_client', 'The OAuth client was not found.');
    if (client.secret === undefined) return oauthError(400, 'invalid_request', 'client_secret is missing.');
    if (client.secret !== options.clientSecret) return oauthError(401, 'invalid_client', 'Unauthorized');

    switch (body.grant_type) {
      case undefined:
        return oauthError(400, 'invalid_request', 'Missing required parameter: grant_type');
      case 'authorization_code': {
        if (body.code === undefined) return oauthError(400, 'invalid_request', 'Missing required parameter: code');
        if (body.redirect_uri === undefined) return oauthError(400, 'invalid_request', 'Missing required parameter: redirect_uri');
        const issued = tokens.redeemCode(body.code, body.redirect_uri, body.code_verifier);
        return issued ? { status: 200, body: await tokenBody(issued, keys) } : oauthError(400, 'invalid_grant', 'Bad Request');
      }
      case 'refresh_token': {
        if (body.refresh_token === undefined) return oauthError(400, 'invalid_request', 'Missing required parameter: refresh_token');
        const issued = switches.invalidGrant ? undefined : tokens.refresh(body.refresh_token, switches.rotateRefreshTokens);
        if (!issued) return oauthError(400, 'invalid_grant', EXPIRED_OR_REVOKED);
        return { status: 200, body: await tokenBody(issued, keys), refreshed: { account: issued.account, ...(issued.replaces ? { replaces: issued.replaces } : {}) } };
      }
      default:
        return oauthError(400, 'unsupported_grant_type', `Invalid grant_type: ${body.grant_type}`);
    }
  }

  function revokeAnswer(request: FastifyRequest, body: Params): Answer {
    // Google takes the token from the form body or, for older clients, the query string.
    const token = body.token ?? paramsOf(request.query).token;
    if (token === undefined) return oauthError(400, 'invalid_request', 'Bad Request');
    if (switches.refuseRevocations) return oauthError(switches.refuseRevocations.status, switches.refuseRevocations.error);
    return tokens.revoke(token, options.revocationEndsAccountGrants ?? false) ? { status: 200, body: {} } : oauthError(400, 'invalid_token', 'Token expired or revoked');
  }

  // Shared by /token and /revoke: scripted failures and delays apply before any real work.
  async function oauthEndpoint(
    endpoint: 'token' | 'revoke',
    request: FastifyRequest,
    reply: FastifyReply,
    handle: (request: FastifyRequest, body: Params) => Answer | Promise<Answer>,
  ): Promise<FastifyReply> {
    const at = clock();
    const body = paramsOf(request.body);
    const faults = endpoint === 'token' ? options.faults : undefined;
    const refreshing = body.grant_type === 'refresh_token' ? body.refresh_token : undefined;
    if (faults && (await faults.outage(request, reply, { error: 'backend_error' }, refreshing !== undefined, refreshing))) return reply;
    let answer: Answer;
    if (pendingFailures.count > 0) {
      pendingFailures.count -= 1;
      const status = pendingFailures.status;
      answer = oauthError(status, status === 429 ? 'rate_limit_exceeded' : 'backend_error');
    } else {
      answer = await handle(request, body);
    }
    if (switches.delayMs > 0) await sleep(switches.delayMs);
    if (endpoint === 'token' && switches.holdAnswer) await switches.holdAnswer();
    calls.push({
      endpoint,
      at,
      status: answer.status,
      ...(endpoint === 'token' && body.grant_type !== undefined ? { grantType: body.grant_type } : {}),
      ...(answer.error === undefined ? {} : { error: answer.error }),
      ...answer.refreshed,
    });
    const lost = faults?.tokenAnswered(at, answer, (accessToken) => tokens.accessTokenState(accessToken)?.account, refreshing);
    if (lost) {
      calls[calls.length - 1]!.answerLost = true;
      await faults!.neverAnswer(request, reply, lost);
      return reply;
    }
    return reply.code(answer.status).header('cache-control', 'no-store').send(answer.body);
  }

  app.post('/token', (request, reply) => oauthEndpoint('token', request, reply, tokenAnswer));
  app.post('/revoke', (request, reply) => oauthEndpoint('revoke', request, reply, revokeAnswer));

  app.get('/oauth2/v3/certs', async () => keys.jwks());
  calendarApi.register(app);
  push.register(app);

  await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  const { port } = app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    authorizeUrl: `${url}/o/oauth2/v2/auth`,
    tokenUrl: `${url}/token`,
    revokeUrl: `${url}/revoke`,
    calendarApiUrl: `${url}/calendar/v3`,
    riscJwksUrl: `${url}/oauth2/v3/certs`,
    riscIssuer: GOOGLE_RISC_ISSUER,
    switches,
    calls,
    issuedSecrets: () => [...tokens.issuedSecrets(), ...push.channelTokens(), options.clientSecret],
    signInAs: (account) => {
      signedInAccount = account;
    },
    calendar: (account) => calendarApi.calendar(account),
    channels: () => push.channels(),
    liveChannels: () => push.liveChannels(),
    expireChannel: (channelId) => push.expireChannel(channelId),
    notify: (channelId) => push.notify(channelId),
    redeliver: (channelId, messageNumber) => push.redeliver(channelId, messageNumber),
    registerRiscReceiver: (receiverUrl) => keys.registerRiscReceiver(receiverUrl),
    sendSecurityEvent: (account, event, eventOptions) => keys.sendSecurityEvent(account, event, eventOptions),
    liveRefreshTokens: () => tokens.liveRefreshTokens(),
    isRevoked: (token) => tokens.isRevoked(token),
    revokeAllGrants: () => tokens.revokeAll(),
    reset() {
      // Mutate in place: callers may hold references to `calls` and `switches`.
      calls.length = 0;
      switches.invalidGrant = false;
      switches.rotateRefreshTokens = false;
      switches.delayMs = 0;
      switches.holdAnswer = undefined;
      switches.refuseRevocations = undefined;
      pendingFailures = { count: 0, status: 503 };
      calendarApi.reset();
    },
    close: () => app.close(),
  };
}
