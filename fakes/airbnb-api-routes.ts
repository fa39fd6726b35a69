// The host API of the fake Airbnb (fakes/airbnb.ts): listings, reservations and webhook subscriptions,
// authenticated like Airbnb's (the app's API key and the host's OAuth token, each in its own header).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AirbnbHosts } from './airbnb-hosts';
import type { AirbnbTokenStore } from './airbnb-tokens';

const MAX_PAGE_SIZE = 50;

export interface FakeAirbnbApiCall {
  endpoint: 'listings' | 'reservations' | 'subscriptions';
  method: string;
  at: number;
  status: number;
  accessTokenExpired?: boolean;
}

interface ApiRouteContext {
  clientId: string;
  clock: () => number;
  tokens: AirbnbTokenStore;
  hosts: AirbnbHosts;
  record(call: FakeAirbnbApiCall): void;
  /** A scripted failure (failNext) or delay that applies before the real work; answers the failure status if any. */
  interfere(target: 'api'): Promise<number | undefined>;
  /** Whether this endpoint pages forever (the endlessPages switch). */
  pagesNeverEnd(endpoint: 'listings' | 'reservations'): boolean;
}

function apiError(reply: FastifyReply, status: number, type: string, message: string) {
  return reply.code(status).send({ error_code: status, error_type: type, error_message: message });
}

function pageSize(value: unknown): number {
  const size = Number(value ?? MAX_PAGE_SIZE);
  return Number.isInteger(size) && size > 0 ? Math.min(size, MAX_PAGE_SIZE) : MAX_PAGE_SIZE;
}

export function registerAirbnbApi(app: FastifyInstance, context: ApiRouteContext): void {
  const { hosts, tokens, clock } = context;

  /** The host the call acts for and its entry in the calls log (status 200 until answered otherwise), or nothing once refused. */
  async function authenticate(
    request: FastifyRequest,
    reply: FastifyReply,
    endpoint: FakeAirbnbApiCall['endpoint'],
  ): Promise<{ userId: string; call: FakeAirbnbApiCall } | undefined> {
    const call: FakeAirbnbApiCall = { endpoint, method: request.method, at: clock(), status: 200 };
    context.record(call);
    const failure = await context.interfere('api');
    if (failure !== undefined) {
      call.status = failure;
      await apiError(reply, failure, failure === 429 ? 'rate_limited' : 'service_unavailable', 'Please try again later');
      return undefined;
    }
    if (request.headers['x-airbnb-api-key'] !== context.clientId) {
      call.status = 403;
      await apiError(reply, 403, 'invalid_api_key', 'The API key is not valid');
      return undefined;
    }
    const token = request.headers['x-airbnb-oauth-token'];
    const state = typeof token === 'string' ? tokens.accessTokenState(token) : undefined;
    call.accessTokenExpired = state?.expired ?? false;
    if (!state || state.expired || state.revoked) {
      call.status = 401;
      await apiError(reply, 401, 'invalid_token', 'The OAuth token is invalid or expired');
      return undefined;
    }
    return { userId: state.userId, call };
  }

  app.get<{ Querystring: { _limit?: string; _offset?: string } }>('/v2/listings', async (request, reply) => {
    const caller = await authenticate(request, reply, 'listings');
    if (caller === undefined) return reply;
    const offset = Number(request.query._offset ?? 0);
    if (!Number.isInteger(offset) || offset < 0) {
      caller.call.status = 400;
      return apiError(reply, 400, 'invalid_parameter', '_offset must be a non-negative integer');
    }
    const all = hosts.hostListings(caller.userId);
    const listings = all.slice(offset, offset + pageSize(request.query._limit));
    const nextOffset = context.pagesNeverEnd('listings') ? offset : offset + listings.length < all.length ? offset + listings.length : null;
    return { listings, metadata: { next_offset: nextOffset } };
  });

  app.get<{ Querystring: { _limit?: string; cursor?: string } }>('/v2/reservations', async (request, reply) => {
    const caller = await authenticate(request, reply, 'reservations');
    if (caller === undefined) return reply;
    const page = hosts.reservationsSince(caller.userId, request.query.cursor, pageSize(request.query._limit));
    if (page.kind === 'gone') {
      caller.call.status = 410;
      return apiError(reply, 410, 'cursor_expired', 'The cursor has expired; list all reservations again');
    }
    if (page.kind === 'invalid') {
      caller.call.status = 400;
      return apiError(reply, 400, 'invalid_parameter', 'cursor is not valid');
    }
    return { reservations: page.reservations, metadata: { cursor: page.cursor, has_more: page.hasMore || context.pagesNeverEnd('reservations') } };
  });

  app.get('/v2/webhook_subscriptions', async (request, reply) => {
    const caller = await authenticate(request, reply, 'subscriptions');
    if (caller === undefined) return reply;
    return { webhook_subscriptions: hosts.hostSubscriptions(caller.userId).map(({ id, url, events }) => ({ id, url, events })) };
  });

  app.post<{ Body: { url?: unknown; events?: unknown } }>('/v2/webhook_subscriptions', async (request, reply) => {
    const caller = await authenticate(request, reply, 'subscriptions');
    if (caller === undefined) return reply;
    const { url, events } = request.body ?? {};
    const validEvents = Array.isArray(events) && events.length > 0 && events.every((event) => typeof event === 'string' && event.startsWith('reservation.'));
    if (typeof url !== 'string' || !URL.canParse(url) || !validEvents) {
      caller.call.status = 400;
      return apiError(reply, 400, 'invalid_parameter', 'url and reservation events are required');
    }
    const subscription = hosts.subscribe(caller.userId, url, events as string[]);
    caller.call.status = 201;
    return reply.code(201).send({ webhook_subscription: { id: subscription.id, url: subscription.url, events: subscription.events } });
  });

  app.delete<{ Params: { id: string } }>('/v2/webhook_subscriptions/:id', async (request, reply) => {
    const caller = await authenticate(request, reply, 'subscriptions');
    if (caller === undefined) return reply;
    if (!hosts.unsubscribe(caller.userId, Number(request.params.id))) {
      caller.call.status = 404;
      return apiError(reply, 404, 'not_found', 'No such webhook subscription');
    }
    caller.call.status = 204;
    return reply.code(204).send();
  });
}
