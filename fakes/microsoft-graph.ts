// Microsoft Graph routes of the fake (fakes/microsoft.ts): subscriptions with their validation handshake,
// calendarView delta, revokeSignInSessions, and the notifications Graph sends. Status codes and error
// bodies mirror real Graph.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { DeltaState, FakeCalendars } from './microsoft-calendar';

const MAX_SUBSCRIPTION_MINUTES = 10080;
const VALIDATION_TIMEOUT_MS = 10_000;
const DEFAULT_PAGE_SIZE = 10;
const CHANGE_TYPES = new Set(['created', 'updated', 'deleted']);

export type GraphEndpoint = 'subscriptions.create' | 'subscriptions.list' | 'subscriptions.renew' | 'subscriptions.reauthorize' | 'subscriptions.delete' | 'delta' | 'revokeSignInSessions';

export interface FakeGraphCall {
  endpoint: GraphEndpoint;
  at: number;
  status: number;
  subscriptionId?: string;
  error?: string;
  /** Delta reads: the first page of a full read, a later page, or the start of an incremental read. */
  delta?: 'initial' | 'next' | 'incremental';
  accessTokenExpired?: boolean;
}

export interface FakeSubscription {
  id: string;
  oid: string;
  changeType: string;
  resource: string;
  notificationUrl: string;
  lifecycleNotificationUrl: string | undefined;
  clientState: string | undefined;
  expiresAt: number;
  removed: boolean;
  reauthorizationRequired: boolean;
  renewals: number;
  reauthorizations: number;
}

export interface GraphContext {
  clock: () => number;
  tenantId: string;
  calendars: FakeCalendars;
  account(authorization: string | undefined): { oid: string } | 'expired' | undefined;
  /** A scripted failure (failNext) or delay (delayMs) for this call, if one is due. */
  disturbance(): Promise<number | undefined>;
  /** Whether this creation's answer is to be lost after the subscription was made (loseCreateAnswers). */
  loseCreateAnswer(): boolean;
  record(call: FakeGraphCall): void;
}

interface Answer {
  status: number;
  body?: object;
  subscriptionId?: string;
  delta?: FakeGraphCall['delta'];
}

const graphError = (status: number, code: string, message: string): Answer => ({ status, body: { error: { code, message, innerError: { date: new Date().toISOString(), 'request-id': randomUUID() } } } });
const notFound = () => graphError(404, 'ResourceNotFound', 'The object was not found.');

function isLoopback(url: string): boolean {
  return URL.canParse(url) && ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(url).hostname);
}

const encodeState = (state: DeltaState) => Buffer.from(JSON.stringify(state)).toString('base64url');
function decodeState(token: string): DeltaState | undefined {
  try {
    return JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as DeltaState;
  } catch {
    return undefined;
  }
}

export function registerFakeGraph(app: FastifyInstance, baseUrl: () => string, context: GraphContext) {
  const { clock, calendars } = context;
  const subscriptions = new Map<string, FakeSubscription>();
  const clientStates: string[] = [];
  const live = (subscription: FakeSubscription | undefined, oid: string) =>
    subscription && subscription.oid === oid && !subscription.removed && clock() < subscription.expiresAt ? subscription : undefined;

  function route(endpoint: GraphEndpoint, handle: (request: FastifyRequest, oid: string) => Promise<Answer> | Answer) {
    return async (request: FastifyRequest, reply: FastifyReply) => {
      const at = clock();
      const failure = await context.disturbance();
      const account = context.account(request.headers.authorization);
      const answer =
        failure !== undefined
          ? graphError(failure, failure === 429 ? 'TooManyRequests' : 'ServiceUnavailable', 'The service is temporarily unavailable.')
          : typeof account === 'object'
            ? await handle(request, account.oid)
            : graphError(401, 'InvalidAuthenticationToken', account === 'expired' ? 'Lifetime validation failed, the token is expired.' : 'Access token validation failure.');
      const error = (answer.body as { error?: { code: string } } | undefined)?.error?.code;
      context.record({
        endpoint,
        at,
        status: answer.status,
        ...(answer.subscriptionId ? { subscriptionId: answer.subscriptionId } : {}),
        ...(error ? { error } : {}),
        ...(answer.delta ? { delta: answer.delta } : {}),
        ...(account === 'expired' ? { accessTokenExpired: true } : {}),
      });
      if (failure === 429) reply.header('retry-after', '1');
      return reply.code(answer.status).send(answer.body ?? '');
    };
  }

  function checkExpiry(value: unknown): number | Answer {
    const expiresAt = typeof value === 'string' ? Date.parse(value) : Number.NaN;
    if (Number.isNaN(expiresAt)) return graphError(400, 'InvalidRequest', 'expirationDateTime is missing or not a date.');
    if (expiresAt <= clock()) return graphError(400, 'InvalidRequest', 'Subscription expiration must be in the future.');
    if (expiresAt > clock() + MAX_SUBSCRIPTION_MINUTES * 60_000) {
      return graphError(400, 'InvalidRequest', `Subscription expiration can only be ${MAX_SUBSCRIPTION_MINUTES} minutes in the future.`);
    }
    return expiresAt;
  }

  /** Graph proves each URL answers for the subscriber before it creates the subscription. */
  async function passesValidation(url: string): Promise<boolean> {
    const validationToken = `Validation: Testing client application reachability for subscription Request-Id: ${randomUUID()}`;
    const target = new URL(url);
    target.searchParams.set('validationToken', validationToken);
    try {
      const response = await fetch(target, { method: 'POST', headers: { 'content-type': 'text/plain; charset=utf-8' }, body: '', signal: AbortSignal.timeout(VALIDATION_TIMEOUT_MS) });
      return response.status === 200 && (await response.text()) === validationToken;
    } catch {
      return false;
    }
  }

  function describe(subscription: FakeSubscription): object {
    const { id, resource, changeType, clientState, notificationUrl, lifecycleNotificationUrl, oid } = subscription;
    return { id, resource, changeType, clientState, notificationUrl, lifecycleNotificationUrl, creatorId: oid, expirationDateTime: new Date(subscription.expiresAt).toISOString(), latestSupportedTlsVersion: 'v1_2' };
  }

  app.post('/v1.0/subscriptions', route('subscriptions.create', async (request, oid) => {
    const body = (request.body ?? {}) as Record<string, unknown>;
    const { changeType, notificationUrl, lifecycleNotificationUrl, resource, clientState } = body;
    if (typeof changeType !== 'string' || !changeType.split(',').every((type) => CHANGE_TYPES.has(type))) return graphError(400, 'InvalidRequest', 'changeType is invalid.');
    if (typeof resource !== 'string' || !/^\/?me\/events$/i.test(resource)) return graphError(400, 'InvalidRequest', 'resource is not supported by this fake.');
    // Fakes reach only this machine; the real Graph also insists on https.
    if (typeof notificationUrl !== 'string' || !isLoopback(notificationUrl)) return graphError(400, 'InvalidRequest', 'notificationUrl must be a loopback URL.');
    if (lifecycleNotificationUrl !== undefined && (typeof lifecycleNotificationUrl !== 'string' || !isLoopback(lifecycleNotificationUrl))) {
      return graphError(400, 'InvalidRequest', 'lifecycleNotificationUrl must be a loopback URL.');
    }
    if (clientState !== undefined && (typeof clientState !== 'string' || clientState.length > 128)) return graphError(400, 'InvalidRequest', 'clientState must be at most 128 characters.');
    const expiresAt = checkExpiry(body.expirationDateTime);
    if (typeof expiresAt !== 'number') return expiresAt;
    for (const url of [notificationUrl, lifecycleNotificationUrl]) {
      if (url !== undefined && !(await passesValidation(url))) {
        return graphError(400, 'ValidationError', 'Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.');
      }
    }
    if (clientState) clientStates.push(clientState);
    const subscription: FakeSubscription = {
      id: randomUUID(), oid, changeType, resource, notificationUrl, lifecycleNotificationUrl, clientState, expiresAt,
      removed: false, reauthorizationRequired: false, renewals: 0, reauthorizations: 0,
    };
    subscriptions.set(subscription.id, subscription);
    // Graph did the work, but a gateway gave up waiting: the caller never learns the id.
    if (context.loseCreateAnswer()) return { ...graphError(504, 'GatewayTimeout', 'The gateway did not receive a timely response.'), subscriptionId: subscription.id };
    return { status: 201, body: describe(subscription), subscriptionId: subscription.id };
  }));

  // With a delegated token Graph lists the calling app's subscriptions for the signed-in user. Whether it
  // echoes clientState here is not documented; the fake leaves it out, so nothing can come to rely on it.
  app.get('/v1.0/subscriptions', route('subscriptions.list', (_request, oid) => ({
    status: 200,
    body: {
      '@odata.context': `${baseUrl()}/v1.0/$metadata#subscriptions`,
      value: [...subscriptions.values()].filter((entry) => live(entry, oid)).map((entry) => ({ ...describe(entry), clientState: null })),
    },
  })));

  app.patch('/v1.0/subscriptions/:id', route('subscriptions.renew', (request, oid) => {
    const { id } = request.params as { id: string };
    const subscription = live(subscriptions.get(id), oid);
    if (!subscription) return { ...notFound(), subscriptionId: id };
    const expiresAt = checkExpiry(((request.body ?? {}) as Record<string, unknown>).expirationDateTime);
    if (typeof expiresAt !== 'number') return { ...expiresAt, subscriptionId: id };
    Object.assign(subscription, { expiresAt, reauthorizationRequired: false, renewals: subscription.renewals + 1 });
    return { status: 200, body: describe(subscription), subscriptionId: id };
  }));

  app.post('/v1.0/subscriptions/:id/reauthorize', route('subscriptions.reauthorize', (request, oid) => {
    const { id } = request.params as { id: string };
    const subscription = live(subscriptions.get(id), oid);
    if (!subscription) return { ...notFound(), subscriptionId: id };
    Object.assign(subscription, { reauthorizationRequired: false, reauthorizations: subscription.reauthorizations + 1 });
    return { status: 204, subscriptionId: id };
  }));

  app.delete('/v1.0/subscriptions/:id', route('subscriptions.delete', (request, oid) => {
    const { id } = request.params as { id: string };
    const subscription = live(subscriptions.get(id), oid);
    if (!subscription) return { ...notFound(), subscriptionId: id };
    subscription.removed = true;
    return { status: 204, subscriptionId: id };
  }));

  app.get('/v1.0/me/calendarView/delta', route('delta', (request, oid) => {
    const query = request.query as Record<string, string | undefined>;
    const size = Number(/odata\.maxpagesize=(\d+)/.exec(String(request.headers.prefer ?? ''))?.[1] ?? DEFAULT_PAGE_SIZE);
    const token = query.$deltatoken ?? query.$skiptoken;
    const delta: FakeGraphCall['delta'] = token === undefined ? 'initial' : query.$deltatoken !== undefined ? 'incremental' : 'next';
    let state: DeltaState | undefined;
    if (token !== undefined) {
      state = decodeState(token);
      if (!state || state.oid !== oid) return { ...graphError(400, 'BadRequest', 'The delta token is invalid.'), delta };
      if (state.generation !== calendars.generation) return { ...graphError(410, 'SyncStateNotFound', 'The sync state generation is not found.'), delta };
      if (delta === 'incremental') state = calendars.continueDelta(state);
    } else {
      const start = Date.parse(query.startDateTime ?? '');
      const end = Date.parse(query.endDateTime ?? '');
      if (Number.isNaN(start) || Number.isNaN(end)) {
        const message = 'This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.';
        return { ...graphError(400, 'ErrorInvalidParameter', message), delta };
      }
      state = calendars.startDelta(oid, start, end);
    }
    const page = calendars.page(state, size);
    const link = page.next
      ? { '@odata.nextLink': `${baseUrl()}/v1.0/me/calendarView/delta?$skiptoken=${encodeState(page.next)}` }
      : { '@odata.deltaLink': `${baseUrl()}/v1.0/me/calendarView/delta?$deltatoken=${encodeState(state)}` };
    return { status: 200, body: { '@odata.context': `${baseUrl()}/v1.0/$metadata#Collection(event)`, value: page.items, ...link }, delta };
  }));

  // Signs the user out of every app on every device: what disconnecting must never do.
  app.post('/v1.0/me/revokeSignInSessions', route('revokeSignInSessions', () => ({ status: 200, body: { value: true } })));

  async function post(url: string | undefined, item: object): Promise<{ status: number; body: string }> {
    if (!url || !isLoopback(url)) throw new Error(`the fake only posts to loopback URLs (${url ?? 'none'})`);
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ value: [item] }) });
    return { status: response.status, body: await response.text() };
  }

  function subscription(id: string): FakeSubscription {
    const found = subscriptions.get(id);
    if (!found) throw new Error(`no subscription ${id}`);
    return found;
  }

  return {
    subscriptions: () => [...subscriptions.values()],
    liveSubscriptions: (oid?: string) => [...subscriptions.values()].filter((entry) => !entry.removed && clock() < entry.expiresAt && (oid === undefined || entry.oid === oid)),
    clientStates: () => [...clientStates],
    expireSubscriptions() {
      for (const entry of subscriptions.values()) entry.expiresAt = Math.min(entry.expiresAt, clock());
    },
    /** A change notification as Graph sends it; `clientState` overrides the subscription's (forgeries). */
    notify(subscriptionId: string, change: { eventId: string; changeType: 'created' | 'updated' | 'deleted'; clientState?: string }) {
      const target = subscription(subscriptionId);
      const resource = `Users/${target.oid}/Events/${change.eventId}`;
      return post(target.notificationUrl, {
        subscriptionId,
        subscriptionExpirationDateTime: new Date(target.expiresAt).toISOString(),
        changeType: change.changeType,
        resource,
        resourceData: { '@odata.type': '#Microsoft.Graph.Event', '@odata.id': resource, '@odata.etag': calendars.etag(target.oid, change.eventId), id: change.eventId },
        clientState: change.clientState ?? target.clientState,
        tenantId: context.tenantId,
      });
    },
    /** A lifecycle notification; removing a subscription or asking for reauthorization also changes it here. */
    sendLifecycleEvent(subscriptionId: string, lifecycleEvent: 'reauthorizationRequired' | 'subscriptionRemoved' | 'missed', options: { clientState?: string } = {}) {
      const target = subscription(subscriptionId);
      if (lifecycleEvent === 'subscriptionRemoved') target.removed = true;
      if (lifecycleEvent === 'reauthorizationRequired') target.reauthorizationRequired = true;
      return post(target.lifecycleNotificationUrl ?? target.notificationUrl, {
        subscriptionId,
        subscriptionExpirationDateTime: new Date(target.expiresAt).toISOString(),
        tenantId: context.tenantId,
        clientState: options.clientState ?? target.clientState,
        lifecycleEvent,
      });
    },
  };
}

export type FakeGraph = ReturnType<typeof registerFakeGraph>;
