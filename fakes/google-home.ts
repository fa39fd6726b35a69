// A fake Google for smart-home actions: the service-account token endpoint and Home Graph, for tests and
// sandbox mode. Binds to 127.0.0.1 only. Statuses and error bodies follow Google's APIs (shared/protocols.md
// "Google Home"): Home Graph knows only agent users whose SYNC succeeded, and answers 404 for the others.
import Fastify, { type FastifyReply } from 'fastify';
import formbody from '@fastify/formbody';
import type { AddressInfo } from 'node:net';
import { paramsOf } from './http-params';
import { ServiceAccountTokenIssuer, type FakeServiceAccount } from './google-home-service-account';

export { generateServiceAccountKey, HOME_GRAPH_SCOPE, type FakeServiceAccount } from './google-home-service-account';

export interface FakeGoogleHomeOptions {
  serviceAccount: FakeServiceAccount;
  port?: number;
  clock?: () => number;
  accessTokenLifetimeSeconds?: number;
}

export type FakeGoogleHomeEndpoint = 'token' | 'requestSync' | 'reportState' | 'deleteAgentUser';

export interface FakeGoogleHomeCall {
  endpoint: FakeGoogleHomeEndpoint;
  at: number;
  status: number;
  agentUserId?: string;
  error?: string;
  accessTokenExpired?: boolean;
}

export interface FakeStateReport {
  requestId: string;
  states: Record<string, unknown>;
  at: number;
}

export interface FakeGoogleHomeSwitches {
  /** Home Graph answers 403 PERMISSION_DENIED, as when the API is not enabled for the project. */
  permissionDenied: boolean;
  /** The next `count` requests (of one endpoint, or any) fail with `status` (429 or 5xx). */
  failNext(count: number, status?: number, endpoint?: FakeGoogleHomeEndpoint): void;
}

const GRPC_STATUS: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
};

function googleError(status: number, message: string) {
  return { error: { code: status, message, status: GRPC_STATUS[status] ?? 'UNKNOWN' } };
}

export async function startFakeGoogleHome(options: FakeGoogleHomeOptions) {
  const clock = options.clock ?? Date.now;
  const calls: FakeGoogleHomeCall[] = [];
  const linked = new Set<string>();
  const reports = new Map<string, FakeStateReport[]>();
  const syncRequests = new Map<string, number>();
  const deletes = new Map<string, number>();
  let pendingFailures: { count: number; status: number; endpoint: FakeGoogleHomeEndpoint | undefined } = { count: 0, status: 503, endpoint: undefined };
  let tokenUrl = '';

  const switches: FakeGoogleHomeSwitches = {
    permissionDenied: false,
    failNext(count, status = 503, endpoint) {
      if (!Number.isInteger(count) || count < 0) throw new RangeError('failNext count must be a non-negative integer');
      if (status !== 429 && (status < 500 || status > 599)) throw new RangeError('failNext status must be 429 or 5xx');
      pendingFailures = { count, status, endpoint };
    },
  };
  const tokens = new ServiceAccountTokenIssuer(options.serviceAccount, {
    clock,
    audience: () => tokenUrl,
    accessTokenLifetimeSeconds: options.accessTokenLifetimeSeconds ?? 3600,
  });

  function scriptedFailure(endpoint: FakeGoogleHomeEndpoint): number | undefined {
    if (pendingFailures.count === 0 || (pendingFailures.endpoint && pendingFailures.endpoint !== endpoint)) return undefined;
    pendingFailures.count -= 1;
    return pendingFailures.status;
  }

  const app = Fastify({ logger: false });
  await app.register(formbody);

  app.post('/token', async (request, reply) => {
    const at = clock();
    const body = paramsOf(request.body);
    const refuse = (status: number, error: string, description: string) => {
      calls.push({ endpoint: 'token', at, status, error });
      return reply.code(status).send({ error, error_description: description });
    };
    const failure = scriptedFailure('token');
    if (failure) return refuse(failure, failure === 429 ? 'rate_limit_exceeded' : 'internal_failure', 'Please retry later');
    if (body.grant_type !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return refuse(400, 'unsupported_grant_type', 'Invalid grant_type: ' + (body.grant_type ?? ''));
    if (!body.assertion) return refuse(400, 'invalid_request', 'Missing required parameter: assertion');
    const outcome = await tokens.exchange(body.assertion);
    if ('error' in outcome) return refuse(400, outcome.error, outcome.description);
    calls.push({ endpoint: 'token', at, status: 200 });
    return reply.code(200).header('cache-control', 'no-store').send({ access_token: outcome.accessToken, expires_in: outcome.expiresIn, token_type: 'Bearer' });
  });

  /** The checks every Home Graph call goes through, in Google's order; undefined when the call may proceed. */
  function refusal(endpoint: FakeGoogleHomeEndpoint, authorization: string | undefined, agentUserId: string | undefined, reply: FastifyReply) {
    const at = clock();
    const refuse = (status: number, message: string, extra: Partial<FakeGoogleHomeCall> = {}) => {
      calls.push({ endpoint, at, status, error: GRPC_STATUS[status], ...(agentUserId ? { agentUserId } : {}), ...extra });
      return reply.code(status).send(googleError(status, message));
    };
    const failure = scriptedFailure(endpoint);
    if (failure) return refuse(failure, failure === 429 ? 'Quota exceeded' : 'The service is currently unavailable.');
    const check = tokens.check(/^Bearer (\S+)$/i.exec(authorization ?? '')?.[1]);
    if (check !== 'valid') {
      return refuse(401, 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.', { accessTokenExpired: check === 'expired' });
    }
    if (switches.permissionDenied) return refuse(403, 'The caller does not have permission');
    if (!agentUserId) return refuse(400, 'Request contains an invalid argument.');
    if (!linked.has(agentUserId)) return refuse(404, 'Requested entity was not found.');
    return undefined;
  }

  function succeed(endpoint: FakeGoogleHomeEndpoint, agentUserId: string, reply: FastifyReply, body: object) {
    calls.push({ endpoint, at: clock(), status: 200, agentUserId });
    return reply.code(200).send(body);
  }

  // find-my-way reads `::` as a literal colon, the separator of Google's custom methods.
  app.post('/v1/devices::requestSync', async (request, reply) => {
    const body = request.body as { agentUserId?: unknown } | undefined;
    const agentUserId = typeof body?.agentUserId === 'string' ? body.agentUserId : undefined;
    const refused = refusal('requestSync', request.headers.authorization, agentUserId, reply);
    if (refused) return refused;
    syncRequests.set(agentUserId!, (syncRequests.get(agentUserId!) ?? 0) + 1);
    return succeed('requestSync', agentUserId!, reply, {});
  });

  app.post('/v1/devices::reportStateAndNotification', async (request, reply) => {
    const body = request.body as { agentUserId?: unknown; requestId?: unknown; payload?: { devices?: { states?: unknown } } } | undefined;
    const agentUserId = typeof body?.agentUserId === 'string' ? body.agentUserId : undefined;
    const states = body?.payload?.devices?.states;
    const refused = refusal('reportState', request.headers.authorization, agentUserId, reply);
    if (refused) return refused;
    if (typeof states !== 'object' || states === null || Array.isArray(states)) {
      calls.push({ endpoint: 'reportState', at: clock(), status: 400, agentUserId: agentUserId!, error: 'INVALID_ARGUMENT' });
      return reply.code(400).send(googleError(400, 'Invalid value at payload.devices.states'));
    }
    const requestId = typeof body?.requestId === 'string' ? body.requestId : '';
    reports.set(agentUserId!, [...(reports.get(agentUserId!) ?? []), { requestId, states: states as Record<string, unknown>, at: clock() }]);
    return succeed('reportState', agentUserId!, reply, { requestId });
  });

  app.delete<{ Params: { agentUserId: string } }>('/v1/agentUsers/:agentUserId', async (request, reply) => {
    const { agentUserId } = request.params;
    const refused = refusal('deleteAgentUser', request.headers.authorization, agentUserId, reply);
    if (refused) return refused;
    linked.delete(agentUserId);
    deletes.set(agentUserId, (deletes.get(agentUserId) ?? 0) + 1);
    return succeed('deleteAgentUser', agentUserId, reply, {});
  });

  // The sandbox has no Google to call SYNC: an operator links an agent user here.
  app.post<{ Params: { agentUserId: string } }>('/sandbox/agent-users/:agentUserId', async (request, reply) => {
    linked.add(request.params.agentUserId);
    return reply.code(204).send();
  });

  await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  tokenUrl = `${url}/token`;
  const count = (endpoint: FakeGoogleHomeEndpoint) => calls.filter((call) => call.endpoint === endpoint && call.status === 200).length;

  return {
    url,
    /** GOOGLE_HOME_TOKEN_URL: also the audience assertions must name. */
    tokenUrl,
    /** GOOGLE_HOME_GRAPH_URL. */
    homeGraphUrl: `${url}/v1`,
    switches,
    calls,
    /** What Google does when our SYNC answer for the agent user succeeded. */
    linkAgentUser: (agentUserId: string) => void linked.add(agentUserId),
    isLinked: (agentUserId: string) => linked.has(agentUserId),
    reports: (agentUserId: string) => [...(reports.get(agentUserId) ?? [])],
    syncRequests: (agentUserId: string) => syncRequests.get(agentUserId) ?? 0,
    /** Successful DELETEs of the agent user (404s not counted). */
    deletes: (agentUserId: string) => deletes.get(agentUserId) ?? 0,
    /** Access tokens issued (each a JWT bearer exchange). */
    tokenExchanges: () => count('token'),
    /** Google ends every access token early: the next Home Graph call answers 401. */
    revokeAccessTokens: () => tokens.revokeAll(),
    expiredTokenCalls: () => calls.filter((call) => call.accessTokenExpired).length,
    issuedSecrets: () => tokens.issuedTokens(),
    close: () => app.close(),
  };
}

export type FakeGoogleHome = Awaited<ReturnType<typeof startFakeGoogleHome>>;
