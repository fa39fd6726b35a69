// A fake Login with Amazon and Alexa event gateway (three regions) for tests and sandbox mode. Binds to
// 127.0.0.1 only. Status codes and error bodies follow shared/protocols.md "Amazon Alexa".
import Fastify, { type FastifyReply } from 'fastify';
import formbody from '@fastify/formbody';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { AmazonTokenStore, type FakeAlexaRegion, type IssuedTokens } from './amazon-tokens';
import { clientCredentials } from './google-oauth-http';
import { paramsOf } from './http-params';

export type { FakeAlexaRegion } from './amazon-tokens';

export interface FakeAmazonOptions {
  clientId: string;
  clientSecret: string;
  port?: number;
  clock?: () => number;
  accessTokenLifetimeSeconds?: number;
  /** How long an AcceptGrant code can be exchanged (minutes, at Amazon). */
  codeLifetimeSeconds?: number;
}

export type FakeAmazonEndpoint = 'token' | 'events';

export interface FakeAmazonCall {
  endpoint: FakeAmazonEndpoint;
  at: number;
  status: number;
  grantType?: string;
  /** LWA's `error`, or the gateway's `payload.code`. */
  error?: string;
  region?: FakeAlexaRegion;
  customerId?: string;
  /** An event sent with an access token past its lifetime. */
  accessTokenExpired?: boolean;
}

export interface FakeAlexaEvent {
  region: FakeAlexaRegion;
  customerId: string;
  at: number;
  event: Record<string, unknown>;
}

export interface FakeAmazonSwitches {
  /** Refreshes issue a new refresh token and retire the old one (LWA keeps the same one). */
  rotateRefreshTokens: boolean;
  /** Sent with 429 answers of the gateway. */
  retryAfterSeconds: number | undefined;
  /** The next `count` requests (of one endpoint, or any) fail with `status` (429 or 5xx). */
  failNext(count: number, status?: number, endpoint?: FakeAmazonEndpoint): void;
}

const REGION_PATHS: Record<string, FakeAlexaRegion> = { na: 'NA', eu: 'EU', fe: 'FE' };

function gatewayError(code: string, description: string) {
  return { header: { namespace: 'System', name: 'Exception', messageId: randomUUID() }, payload: { code, description } };
}

export async function startFakeAmazon(options: FakeAmazonOptions) {
  const clock = options.clock ?? Date.now;
  const calls: FakeAmazonCall[] = [];
  const events: FakeAlexaEvent[] = [];
  let pendingFailures: { count: number; status: number; endpoint: FakeAmazonEndpoint | undefined } = { count: 0, status: 503, endpoint: undefined };

  const switches: FakeAmazonSwitches = {
    rotateRefreshTokens: false,
    retryAfterSeconds: undefined,
    failNext(count, status = 503, endpoint) {
      if (!Number.isInteger(count) || count < 0) throw new RangeError('failNext count must be a non-negative integer');
      if (status !== 429 && (status < 500 || status > 599)) throw new RangeError('failNext status must be 429 or 5xx');
      pendingFailures = { count, status, endpoint };
    },
  };
  const tokens = new AmazonTokenStore(clock, {
    codeLifetimeSeconds: options.codeLifetimeSeconds ?? 300,
    accessTokenLifetimeSeconds: options.accessTokenLifetimeSeconds ?? 3600,
    rotateRefreshTokens: () => switches.rotateRefreshTokens,
  });

  function scriptedFailure(endpoint: FakeAmazonEndpoint): number | undefined {
    if (pendingFailures.count === 0 || (pendingFailures.endpoint && pendingFailures.endpoint !== endpoint)) return undefined;
    pendingFailures.count -= 1;
    return pendingFailures.status;
  }

  const app = Fastify({ logger: false });
  await app.register(formbody);

  app.post('/auth/o2/token', async (request, reply) => {
    const at = clock();
    const body = paramsOf(request.body);
    const answer = (status: number, answerBody: object, error?: string) => {
      calls.push({ endpoint: 'token', at, status, ...(body.grant_type ? { grantType: body.grant_type } : {}), ...(error ? { error } : {}) });
      return reply.code(status).header('cache-control', 'no-store').send(answerBody);
    };
    const refuse = (status: number, error: string, description: string) => answer(status, { error_description: description, error }, error);
    const failure = scriptedFailure('token');
    if (failure) return refuse(failure, failure === 429 ? 'slow_down' : 'server_error', 'The server encountered an internal error, please try again');

    const client = clientCredentials(request, body);
    if (client.id !== options.clientId || client.secret !== options.clientSecret) return refuse(401, 'invalid_client', 'Client authentication failed');
    let issued: IssuedTokens | undefined;
    if (body.grant_type === 'authorization_code') {
      if (!body.code) return refuse(400, 'invalid_request', 'The request is missing a required parameter : code');
      issued = tokens.redeemCode(body.code);
      if (!issued) return refuse(400, 'invalid_grant', 'The request has an invalid grant parameter : code');
    } else if (body.grant_type === 'refresh_token') {
      if (!body.refresh_token) return refuse(400, 'invalid_request', 'The request is missing a required parameter : refresh_token');
      issued = tokens.refresh(body.refresh_token);
      if (!issued) return refuse(400, 'invalid_grant', 'The request has an invalid grant parameter : refresh_token');
    } else {
      return refuse(400, 'unsupported_grant_type', 'The authorization grant type is not supported by the authorization server');
    }
    return answer(200, { access_token: issued.accessToken, refresh_token: issued.refreshToken, token_type: 'bearer', expires_in: issued.expiresIn });
  });

  async function receiveEvent(regionPath: string, authorization: string | undefined, event: unknown, reply: FastifyReply) {
    const at = clock();
    const region = REGION_PATHS[regionPath];
    if (!region) return reply.code(404).send(gatewayError('NOT_FOUND', 'No such gateway'));
    const answer = (status: number, code: string | undefined, description: string, extra: Partial<FakeAmazonCall> = {}) => {
      calls.push({ endpoint: 'events', at, status, region, ...(code ? { error: code } : {}), ...extra });
      if (status === 429 && switches.retryAfterSeconds !== undefined) reply.header('retry-after', String(switches.retryAfterSeconds));
      return code ? reply.code(status).send(gatewayError(code, description)) : reply.code(status).send();
    };
    const failure = scriptedFailure('events');
    if (failure === 429) return answer(429, 'THROTTLING_EXCEPTION', 'Request could not be processed due to throttling');
    if (failure) return answer(failure, 'INTERNAL_SERVICE_EXCEPTION', 'An error occurred on the server side');

    const bearer = /^Bearer (\S+)$/i.exec(authorization ?? '')?.[1];
    const check = bearer ? tokens.checkAccessToken(bearer) : 'unknown';
    if (check === 'expired' || check === 'unknown') {
      return answer(401, 'INVALID_ACCESS_TOKEN_EXCEPTION', 'The access token is invalid, expired, or malformed', { accessTokenExpired: check === 'expired' });
    }
    const { customer } = check;
    if (customer.skillDisabled) return answer(403, 'SKILL_DISABLED_EXCEPTION', 'The skill is disabled for this customer', { customerId: customer.id });
    // Each customer's events go to the gateway of the customer's region; the others answer 403.
    if (customer.region !== region) return answer(403, 'INSUFFICIENT_PERMISSION_EXCEPTION', 'The token is not valid in this region', { customerId: customer.id });
    const header = (event as { event?: { header?: Record<string, unknown> } } | undefined)?.event?.header;
    if (typeof header?.namespace !== 'string' || typeof header.name !== 'string' || typeof header.messageId !== 'string') {
      return answer(400, 'INVALID_REQUEST_EXCEPTION', 'The event has no header with namespace, name and messageId', { customerId: customer.id });
    }
    events.push({ region, customerId: customer.id, at, event: event as Record<string, unknown> });
    return answer(202, undefined, '', { customerId: customer.id });
  }

  app.post<{ Params: { region: string } }>('/gateway/:region/v3/events', (request, reply) => receiveEvent(request.params.region, request.headers.authorization, request.body, reply));

  // The sandbox has no Alexa app to enable the skill: an operator mints the AcceptGrant code here.
  app.post('/sandbox/grant-codes', async (request, reply) => {
    const region = REGION_PATHS[(paramsOf(request.body).region ?? 'na').toLowerCase()];
    if (!region) return reply.code(400).send({ error: 'region must be na, eu or fe' });
    return reply.code(201).send(tokens.issueGrantCode({ region }));
  });

  await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const gatewayUrls: Record<FakeAlexaRegion, string> = { NA: `${url}/gateway/na`, EU: `${url}/gateway/eu`, FE: `${url}/gateway/fe` };
  const tokenCalls = (grantType: string) => calls.filter((call) => call.endpoint === 'token' && call.grantType === grantType && call.status === 200).length;

  return {
    url,
    tokenUrl: `${url}/auth/o2/token`,
    /** ALEXA_EVENT_GATEWAY_{NA,EU,FE}_URL. */
    gatewayUrls,
    switches,
    calls,
    /** What Alexa's AcceptGrant carries: a code for a new customer (or the named one) in `region` (NA unless said). */
    issueGrantCode: (grantOptions?: { region?: FakeAlexaRegion; customerId?: string }) => tokens.issueGrantCode(grantOptions),
    /** Every customer's grants end: refreshes answer invalid_grant, access tokens 401. */
    revokeAll: () => tokens.revoke(),
    revokeCustomer: (customerId: string) => tokens.revoke(customerId),
    /** The customer (or every customer) disabled the skill: the gateway answers 403 SKILL_DISABLED_EXCEPTION, grants are revoked. */
    disableSkill: (customerId?: string) => tokens.disableSkill(customerId),
    customer: (customerId: string) => tokens.customer(customerId),
    liveRefreshTokens: (customerId?: string) => tokens.liveRefreshTokens(customerId),
    /** Events the gateways accepted, of one customer or all. */
    events: (customerId?: string) => events.filter((event) => customerId === undefined || event.customerId === customerId),
    codeExchanges: () => tokenCalls('authorization_code'),
    refreshes: () => tokenCalls('refresh_token'),
    /** Gateway calls that carried an access token past its lifetime. */
    expiredTokenCalls: () => calls.filter((call) => call.accessTokenExpired).length,
    issuedSecrets: () => [...tokens.issuedSecrets(), options.clientSecret],
    close: () => app.close(),
  };
}

export type FakeAmazon = Awaited<ReturnType<typeof startFakeAmazon>>;
