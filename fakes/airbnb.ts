// A fake Airbnb (partner OAuth + host API + reservation webhooks) for tests and sandbox mode. Binds to
// 127.0.0.1 only and sends webhooks to loopback only. Follows shared/protocols.md: a JSON token endpoint
// with Basic client authentication and `expires_at`, rotation on `reset_refresh_token=1`, DELETE revocation.
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { createHmac, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { registerAirbnbApi, type FakeAirbnbApiCall } from './airbnb-api-routes';
import { AirbnbHosts, type FakeListing, type FakeReservation, type FakeWebhookSubscription } from './airbnb-hosts';
import { AirbnbTokenStore, type IssuedTokens } from './airbnb-tokens';
import { assertLoopback } from './loopback';
import { paramsOf } from './http-params';
import type { TokenEndpointFaults } from './token-endpoint-faults';

export interface FakeAirbnbOptions {
  clientId: string;
  clientSecret: string;
  port?: number;
  clock?: () => number;
  /** Airbnb's access tokens live 24 hours. */
  accessTokenLifetimeSeconds?: number;
  /**
   * How long a refresh token keeps working after reset_refresh_token=1 replaced it. Airbnb does not say
   * (unverified); 10 minutes by default, like the grace Microsoft gives, and 0 ends it at once.
   */
  rotationGraceSeconds?: number;
  /** Chaos scenarios only: outages and lost answers of the token endpoint, and its record of every refresh. */
  faults?: TokenEndpointFaults;
  /** How the fake signs the webhooks it sends: the partner secret shared with the platform. */
  webhook?: { secret: string; signatureHeader?: string; signatureEncoding?: 'hex' | 'base64'; timestampHeader?: string };
}

export interface FakeAirbnbOAuthCall {
  endpoint: 'authorize' | 'token' | 'check' | 'revoke';
  at: number;
  status: number;
  grant?: 'code' | 'refresh';
  /** A refresh that asked for a new refresh token (reset_refresh_token=1). */
  rotated?: boolean;
  error?: string;
}

export type FakeAirbnbCall = FakeAirbnbOAuthCall | FakeAirbnbApiCall;

export interface FakeAirbnbSwitches {
  invalidGrant: boolean;
  delayMs: number;
  /** While set, each token request waits, before the fake acts on it, for the promise it returns: a test's gate on the answer. */
  holdAnswer: (() => Promise<void>) | undefined;
  /** The next `count` token-endpoint (or host API) requests answer `status` (429 or 5xx). */
  failNext(count: number, status?: number, target?: 'token' | 'api'): void;
  /** Every reservations cursor handed out so far answers 410 Gone. */
  expireCursors(): void;
  /** Every webhook subscription is gone, as when Airbnb disables failing ones. */
  dropSubscriptions(): void;
  /** A paging fault: this endpoint keeps answering that there is more, with the same page again. */
  endlessPages: 'listings' | 'reservations' | false;
}

export interface ReservationEventRequest {
  userId: string;
  /** Airbnb's reservation events are `reservation.created`, `reservation.updated` and `reservation.cancelled`. */
  type?: string;
  confirmationCode?: string;
  listingId?: number;
  /** Repeat an earlier event's id to redeliver it. */
  eventId?: string;
  /** `bad`: signed with another secret; `missing`: no signature header. */
  signature?: 'valid' | 'bad' | 'missing';
  /** Deliver here instead of to the host's subscriptions. */
  url?: string;
  /**
   * When the delivery is signed; now (real time, as the receiver's clock) by default. An earlier time
   * makes it a captured delivery replayed later.
   */
  signedAt?: Date;
}

function basicCredentials(request: FastifyRequest): { id?: string; secret?: string } {
  const match = /^basic (\S+)$/i.exec(request.headers.authorization ?? '');
  if (!match) return {};
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? { id: decoded } : { id: decoded.slice(0, colon), secret: decoded.slice(colon + 1) };
}

function oauthError(reply: FastifyReply, status: number, error: string, description: string) {
  return reply.code(status).header('cache-control', 'no-store').send({ error, error_description: description });
}

export async function startFakeAirbnb(options: FakeAirbnbOptions) {
  const clock = options.clock ?? Date.now;
  const tokens = new AirbnbTokenStore(clock, options.accessTokenLifetimeSeconds ?? 24 * 3600, (options.rotationGraceSeconds ?? 600) * 1000);
  const hosts = new AirbnbHosts(clock);
  const calls: FakeAirbnbCall[] = [];
  const failures = { token: { count: 0, status: 503 }, api: { count: 0, status: 503 } };
  let approvingHost: string | undefined;

  const switches: FakeAirbnbSwitches = {
    invalidGrant: false,
    delayMs: 0,
    holdAnswer: undefined,
    failNext(count, status = 503, target = 'token') {
      if (!Number.isInteger(count) || count < 0) throw new RangeError('failNext count must be a non-negative integer');
      if (status !== 429 && (status < 500 || status > 599)) throw new RangeError('failNext status must be 429 or 5xx');
      failures[target] = { count, status };
    },
    expireCursors: () => hosts.expireCursors(),
    dropSubscriptions: () => hosts.dropSubscriptions(),
    endlessPages: false,
  };

  async function interfere(target: 'token' | 'api'): Promise<number | undefined> {
    if (switches.delayMs > 0) await sleep(switches.delayMs);
    if (target === 'token' && switches.holdAnswer) await switches.holdAnswer();
    if (failures[target].count === 0) return undefined;
    failures[target].count -= 1;
    return failures[target].status;
  }

  // close() drops keep-alive connections still open: a test's teardown need not wait out their timeout.
  const app = Fastify({ logger: false, forceCloseConnections: true });

  app.get('/oauth2/auth', async (request, reply) => {
    const query = paramsOf(request.query);
    const call: FakeAirbnbOAuthCall = { endpoint: 'authorize', at: clock(), status: 302 };
    calls.push(call);
    if (query.client_id !== options.clientId || query.redirect_uri === undefined || !URL.canParse(query.redirect_uri)) {
      call.status = 400;
      return reply.code(400).type('text/html; charset=utf-8').send('<!doctype html><title>Airbnb</title><p>Invalid client_id or redirect_uri.</p>');
    }
    // The host who signs in and approves: the one the test created last.
    approvingHost ??= hosts.createHost([]).userId;
    const target = new URL(query.redirect_uri);
    target.searchParams.set('code', tokens.issueCode(approvingHost));
    if (query.state !== undefined) target.searchParams.set('state', query.state);
    return reply.redirect(target.toString(), 302);
  });

  app.post('/v2/oauth2/authorizations', async (request, reply) => {
    const query = paramsOf(request.query);
    const body = paramsOf(request.body);
    const grant = body.code !== undefined ? 'code' : body.refresh_token !== undefined ? 'refresh' : undefined;
    const call: FakeAirbnbOAuthCall = { endpoint: 'token', at: clock(), status: 200, ...(grant ? { grant } : {}) };
    if (grant === 'refresh') call.rotated = query.reset_refresh_token === '1';
    calls.push(call);
    const refreshing = grant === 'refresh' ? body.refresh_token : undefined;
    if (options.faults && (await options.faults.outage(request, reply, { error: 'server_error', error_description: 'Please try again later' }, refreshing !== undefined, refreshing))) {
      call.status = 0;
      return reply;
    }
    const refuse = (status: number, error: string, description: string) => {
      if (refreshing !== undefined) options.faults?.refreshDone({ at: call.at, presented: refreshing, succeeded: false });
      Object.assign(call, { status, error });
      return oauthError(reply, status, error, description);
    };
    const failure = await interfere('token');
    if (failure !== undefined) return refuse(failure, failure === 429 ? 'rate_limited' : 'server_error', 'Please try again later');
    const client = basicCredentials(request);
    if (client.id !== options.clientId || client.secret !== options.clientSecret) return refuse(401, 'invalid_client', 'Client authentication failed');
    if (grant === undefined || (body.code !== undefined && body.refresh_token !== undefined)) return refuse(400, 'invalid_request', 'Either code or refresh_token is required');
    let issued: IssuedTokens | undefined;
    if (grant === 'code') issued = tokens.redeemCode(body.code!);
    else if (!switches.invalidGrant) issued = tokens.refresh(body.refresh_token!, call.rotated === true);
    if (!issued) return refuse(400, 'invalid_grant', grant === 'code' ? 'The authorization code is invalid or expired' : 'The refresh token is invalid or revoked');
    const answer = { access_token: issued.accessToken, expires_at: issued.expiresAt, refresh_token: issued.refreshToken, user_id: Number(issued.userId) };
    if (options.faults) {
      const accessTokenExpiresAt = issued.expiresAt * 1000;
      options.faults.accessTokenIssued(issued.userId, accessTokenExpiresAt);
      const lost = refreshing === undefined ? undefined : options.faults.refreshDone({
        at: call.at,
        presented: refreshing,
        succeeded: true,
        grant: issued.userId,
        ...(issued.refreshToken === refreshing ? {} : { rotatedTo: issued.refreshToken }),
        accessTokenExpiresAt,
      });
      if (lost) {
        await options.faults.neverAnswer(request, reply, lost);
        return reply;
      }
    }
    return reply.header('cache-control', 'no-store').send(query._unwrapped === 'true' ? answer : { oauth2_authorization: answer });
  });

  app.get<{ Params: { token: string } }>('/v2/oauth2/authorizations/:token', async (request, reply) => {
    const call: FakeAirbnbOAuthCall = { endpoint: 'check', at: clock(), status: 200 };
    calls.push(call);
    const client = basicCredentials(request);
    if (client.id !== options.clientId || client.secret !== options.clientSecret) return oauthError(reply, (call.status = 401), 'invalid_client', 'Client authentication failed');
    const check = tokens.check(request.params.token);
    if (!check) return oauthError(reply, (call.status = 404), 'not_found', 'Unknown token');
    const answer = { valid: check.valid, expires_at: check.expiresAt, user_id: Number(check.userId) };
    return paramsOf(request.query)._unwrapped === 'true' ? answer : { oauth2_authorization: answer };
  });

  app.delete<{ Params: { token: string } }>('/v2/oauth2/authorizations/:token', async (request, reply) => {
    const call: FakeAirbnbOAuthCall = { endpoint: 'revoke', at: clock(), status: 200 };
    calls.push(call);
    const failure = await interfere('token');
    if (failure !== undefined) return oauthError(reply, (call.status = failure), 'server_error', 'Please try again later');
    const client = basicCredentials(request);
    if (client.id !== options.clientId || client.secret !== options.clientSecret) return oauthError(reply, (call.status = 401), 'invalid_client', 'Client authentication failed');
    if (!tokens.revoke(request.params.token)) return oauthError(reply, (call.status = 404), 'not_found', 'The authorization does not exist or was already deleted');
    return {};
  });

  registerAirbnbApi(app, {
    clientId: options.clientId,
    clock,
    tokens,
    hosts,
    record: (call) => calls.push(call),
    interfere: () => interfere('api'),
    pagesNeverEnd: (endpoint) => switches.endlessPages === endpoint,
  });

  /** POSTs a signed reservation event, as Airbnb does, to each of the host's subscriptions (or to `url`). */
  async function sendReservationEvent(request: ReservationEventRequest) {
    const eventId = request.eventId ?? randomUUID();
    const event = {
      event_id: eventId,
      event_type: request.type ?? 'reservation.updated',
      user_id: Number(request.userId),
      ...(request.listingId === undefined ? {} : { listing_id: request.listingId }),
      ...(request.confirmationCode === undefined ? {} : { confirmation_code: request.confirmationCode }),
      occurred_at: new Date(clock()).toISOString(),
    };
    const body = JSON.stringify(event);
    const targets = request.url !== undefined ? [request.url] : hosts.hostSubscriptions(request.userId).map((subscription) => subscription.url);
    const deliveries: Array<{ url: string; status: number; body: unknown }> = [];
    for (const url of targets) {
      assertLoopback(url);
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...signatureHeaders(body, request.signature ?? 'valid', request.signedAt ?? new Date()) }, body });
      const text = await response.text();
      deliveries.push({ url, status: response.status, body: text === '' ? null : (JSON.parse(text) as unknown) });
    }
    return { eventId, deliveries };
  }

  /** The signature covers the timestamp and the body, so a captured delivery cannot be replayed later. */
  function signatureHeaders(body: string, signature: 'valid' | 'bad' | 'missing', signedAt: Date): Record<string, string> {
    if (!options.webhook) throw new Error('the fake Airbnb was started without a webhook secret');
    const timestamp = String(Math.floor(signedAt.getTime() / 1000));
    const timestampHeader = { [options.webhook.timestampHeader ?? 'x-airbnb-timestamp']: timestamp };
    if (signature === 'missing') return timestampHeader;
    const secret = signature === 'valid' ? options.webhook.secret : `${options.webhook.secret}-forged`;
    const value = signAirbnbWebhook(secret, timestamp, body).toString(options.webhook.signatureEncoding ?? 'hex');
    return { ...timestampHeader, [options.webhook.signatureHeader ?? 'x-airbnb-signature']: value };
  }

  await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  const { port } = app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    authorizeUrl: `${url}/oauth2/auth`,
    apiUrl: url,
    switches,
    calls,
    /** A host with these listings; the next authorizations are approved by this host. */
    createHost(listingNames: string[]): { userId: string; listings: FakeListing[] } {
      const host = hosts.createHost(listingNames);
      approvingHost = host.userId;
      return host;
    },
    addListing: (userId: string, name: string) => hosts.addListing(userId, name),
    createReservation: (input: Parameters<AirbnbHosts['createReservation']>[0]): FakeReservation => hosts.createReservation(input),
    alterReservation: (code: string, change: Parameters<AirbnbHosts['alterReservation']>[1]): FakeReservation => hosts.alterReservation(code, change),
    cancelReservation: (code: string): FakeReservation => hosts.cancelReservation(code),
    liveSubscriptions: (): FakeWebhookSubscription[] => hosts.liveSubscriptions(),
    sendReservationEvent,
    liveRefreshTokens: () => tokens.liveRefreshTokens(),
    issuedSecrets: () => [...tokens.issuedSecrets(), options.clientSecret, ...(options.webhook ? [options.webhook.secret] : [])],
    close: () => app.close(),
  };
}

export type FakeAirbnb = Awaited<ReturnType<typeof startFakeAirbnb>>;

/** The MAC the fake signs with and tests forge deliveries with: HMAC-SHA256 over `<timestamp>.<body>`. */
export function signAirbnbWebhook(secret: string, timestamp: string, body: string): Buffer {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`).digest();
}
