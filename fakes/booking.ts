// A fake Booking.com (Connectivity token exchange + OTA reservation queues) for tests and sandbox
// mode. Binds to 127.0.0.1 only. Behaviour follows shared/protocols.md: 1-hour JWTs, at most 30 per
// hour, reservations delivered until acknowledged.
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { XMLBuilder } from 'fast-xml-parser';
import { BookingReservationQueues, type Acknowledgement, type FakeBookingQueue, type FakeReservationInput } from './booking-queue';
import { BookingTokenIssuer } from './booking-tokens';
import type { TokenEndpointFaults } from './token-endpoint-faults';

export type { Acknowledgement, FakeBookingQueue, FakeReservationInput } from './booking-queue';

export interface FakeBookingOptions {
  clientId: string;
  clientSecret: string;
  port?: number;
  clock?: () => number;
  tokenLifetimeSeconds?: number;
  tokensPerHour?: number;
  /** How many messages one poll returns at most; the rest come with the next poll. */
  batchSize?: number;
  logger?: boolean;
  /**
   * Chaos scenarios only: outages and lost answers of the token exchange, and its record of every
   * exchange (recorded as refreshes that present the machine account's client id).
   */
  faults?: TokenEndpointFaults;
}

export type FakeBookingEndpoint = 'token' | 'poll' | 'acknowledge';

export interface FakeBookingCall {
  endpoint: FakeBookingEndpoint;
  queue?: FakeBookingQueue;
  at: number;
  status: number;
  /** Reservations a poll delivered or an acknowledgement removed. */
  reservationIds?: string[];
  accessTokenExpired?: boolean;
  /** The poll answered truncated XML (the malformedXml switch). */
  malformed?: boolean;
}

export interface FakeBookingSwitches {
  /** Every token exchange is refused with 401, as for a deleted machine account. */
  invalidCredentials: boolean;
  delayMs: number;
  /** The next poll that has reservations to deliver answers a truncated XML document instead, once. */
  malformedXml: boolean;
  /** Acknowledgements are answered with success but take nothing off the queues, so every poll delivers the same again. */
  ignoreAcknowledgements: boolean;
  /** The next `count` requests (of one endpoint, or any) fail with `status` (429 or 5xx). */
  failNext(count: number, status?: number, endpoint?: FakeBookingEndpoint): void;
}

export interface FakeBooking {
  url: string;
  authUrl: string;
  xmlUrl: string;
  switches: FakeBookingSwitches;
  calls: FakeBookingCall[];
  /** A guest books: the reservation waits in the new-reservations queue. Returns its id. */
  queueReservation(input: FakeReservationInput): string;
  queueModification(reservationId: string, changes: Partial<FakeReservationInput>): void;
  queueCancellation(reservationId: string): void;
  acknowledged(): Acknowledgement[];
  pending(queue: FakeBookingQueue): string[];
  issuedSecrets(): string[];
  close(): Promise<void>;
}

const QUEUE_PATHS: Record<string, FakeBookingQueue> = { OTA_HotelResNotif: 'reservations', OTA_HotelResModifyNotif: 'modifications' };
const xmlBuilder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_' });

function otaError(root: string, code: string, text: string): string {
  return xmlBuilder.build({ [root]: { '@_Version': '2.001', Errors: { Error: { '@_Type': '4', '@_Code': code, '@_ShortText': text, '#text': text } } } });
}

export async function startFakeBooking(options: FakeBookingOptions): Promise<FakeBooking> {
  const clock = options.clock ?? Date.now;
  const tokens = await BookingTokenIssuer.create(clock, {
    clientId: options.clientId,
    lifetimeSeconds: options.tokenLifetimeSeconds ?? 3600,
    perHour: options.tokensPerHour ?? 30,
  });
  const queues = new BookingReservationQueues(clock, options.batchSize ?? 50);
  const calls: FakeBookingCall[] = [];
  let pendingFailures: { count: number; status: number; endpoint: FakeBookingEndpoint | undefined } = { count: 0, status: 503, endpoint: undefined };

  const switches: FakeBookingSwitches = {
    invalidCredentials: false,
    delayMs: 0,
    malformedXml: false,
    ignoreAcknowledgements: false,
    failNext(count, status = 503, endpoint) {
      if (!Number.isInteger(count) || count < 0) throw new RangeError('failNext count must be a non-negative integer');
      if (status !== 429 && (status < 500 || status > 599)) throw new RangeError('failNext status must be 429 or 5xx');
      pendingFailures = { count, status, endpoint };
    },
  };

  // Request logs carry only method and path: bodies hold credentials and headers tokens.
  // close() drops keep-alive connections still open: a test's teardown need not wait out their timeout.
  const app = Fastify({
    logger: options.logger ? { serializers: { req: (req) => ({ method: req.method, path: req.url.split('?')[0] }) } } : false,
    forceCloseConnections: true,
  });
  app.addContentTypeParser(['text/xml', 'application/xml'], { parseAs: 'string' }, (_request, body, done) => done(null, body));

  /** Scripted failures and delays come before any real work, as a struggling server's would. */
  async function scripted(endpoint: FakeBookingEndpoint): Promise<number | undefined> {
    if (switches.delayMs > 0) await sleep(switches.delayMs);
    if (pendingFailures.count === 0 || (pendingFailures.endpoint && pendingFailures.endpoint !== endpoint)) return undefined;
    pendingFailures.count -= 1;
    return pendingFailures.status;
  }

  app.post('/token-based-authentication/exchange', async (request, reply) => {
    const at = clock();
    const answer = async (status: number, body: object) => {
      calls.push({ endpoint: 'token', at, status });
      return reply.code(status).header('cache-control', 'no-store').send(body);
    };
    const failure = await scripted('token');
    if (failure) return answer(failure, { errors: [{ code: failure === 429 ? 'rate_limited' : 'internal_error', message: 'Please retry later' }] });
    const body = (typeof request.body === 'object' && request.body !== null ? request.body : {}) as Record<string, unknown>;
    const presented = typeof body.client_id === 'string' ? body.client_id : undefined;
    if (options.faults && (await options.faults.outage(request, reply, { errors: [{ code: 'internal_error', message: 'Please retry later' }] }, presented !== undefined, presented))) return reply;
    if (typeof body.client_id !== 'string' || typeof body.client_secret !== 'string') {
      return answer(400, { errors: [{ code: 'invalid_request', message: 'client_id and client_secret are required' }] });
    }
    if (switches.invalidCredentials || body.client_id !== options.clientId || body.client_secret !== options.clientSecret) {
      return answer(401, { errors: [{ code: 'invalid_client', message: 'Invalid client credentials' }] });
    }
    const jwt = await tokens.issue();
    if (!jwt) return answer(429, { errors: [{ code: 'rate_limited', message: 'Token limit of the machine account reached for this hour' }] });
    if (options.faults) {
      const accessTokenExpiresAt = (Math.floor(at / 1000) + (options.tokenLifetimeSeconds ?? 3600)) * 1000;
      options.faults.accessTokenIssued(body.client_id, accessTokenExpiresAt);
      const lost = options.faults.refreshDone({ at, presented: body.client_id, succeeded: true, grant: body.client_id, accessTokenExpiresAt });
      if (lost) {
        calls.push({ endpoint: 'token', at, status: 200 });
        await options.faults.neverAnswer(request, reply, lost);
        return reply;
      }
    }
    return answer(200, { jwt, ruid: randomUUID() });
  });

  async function otaRequest(request: FastifyRequest<{ Params: { message: string } }>, reply: FastifyReply, endpoint: 'poll' | 'acknowledge') {
    const at = clock();
    const queue = QUEUE_PATHS[request.params.message];
    if (!queue) return reply.code(404).type('text/xml').send(otaError('Response', '404', 'Unknown endpoint'));
    const root = queue === 'reservations' ? 'OTA_HotelResNotifRS' : 'OTA_HotelResModifyNotifRS';
    const answer = (status: number, xml: string, extra: Partial<FakeBookingCall> = {}) => {
      calls.push({ endpoint, queue, at, status, ...extra });
      return reply.code(status).type('text/xml; charset=utf-8').send(xml);
    };
    const failure = await scripted(endpoint);
    if (failure) return answer(failure, otaError(root, String(failure), 'Service temporarily unavailable'));
    const bearer = /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
    const check = bearer ? await tokens.check(bearer) : 'invalid';
    if (check !== 'valid') return answer(401, otaError(root, '401', 'Authorization failed'), { accessTokenExpired: check === 'expired' });

    if (endpoint === 'poll') {
      const { xml, reservationIds } = queues.poll(queue);
      if (switches.malformedXml && reservationIds.length > 0) {
        switches.malformedXml = false;
        return answer(200, xml.slice(0, Math.floor(xml.length * 0.6)), { reservationIds, malformed: true });
      }
      return answer(200, xml, { reservationIds });
    }
    const success = xmlBuilder.build({ [root]: { '@_Version': '2.001', '@_TimeStamp': new Date(at).toISOString(), Success: '' } });
    if (switches.ignoreAcknowledgements) return answer(200, success, { reservationIds: [] });
    const acknowledged = typeof request.body === 'string' ? queues.acknowledge(queue, request.body) : undefined;
    if (!acknowledged) return answer(400, otaError(root, '400', 'Expected a successful response message naming HotelReservationIDs'));
    return answer(200, success, { reservationIds: acknowledged });
  }

  app.get<{ Params: { message: string } }>('/hotels/ota/:message', (request, reply) => otaRequest(request, reply, 'poll'));
  app.post<{ Params: { message: string } }>('/hotels/ota/:message', (request, reply) => otaRequest(request, reply, 'acknowledge'));

  await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  const { port } = app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    authUrl: `${url}/token-based-authentication/exchange`,
    xmlUrl: `${url}/hotels/ota`,
    switches,
    calls,
    queueReservation: (input) => queues.add(input),
    queueModification: (id, changes) => queues.modify(id, changes),
    queueCancellation: (id) => queues.cancel(id),
    acknowledged: () => queues.acknowledged(),
    pending: (queue) => queues.pending(queue),
    issuedSecrets: () => [...tokens.issuedTokens(), options.clientSecret],
    close: () => app.close(),
  };
}
