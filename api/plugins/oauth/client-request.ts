import type { FastifyInstance, FastifyRequest } from 'fastify';
import { requestOrigin } from '../../request-origin';
import { authenticateClient, isBasicAuthorization, parseBasicCredentials, type OAuthClientRow } from '../../../platform/oauth-server/clients';
import { OAuthError } from '../../../platform/oauth-server/errors';

/**
 * Helpers shared by the endpoints clients call directly (token, introspection, revocation):
 * form-encoded parameters only, each at most once, and client authentication with audited failures.
 */

export type FormParameters = Record<string, string>;

/** Body limit of the client-facing endpoints: far above any legitimate request, far below Fastify's 1 MiB default. */
export const CLIENT_REQUEST_BODY_LIMIT = 64 * 1024;

const FORM_CONTENT_TYPE = 'application/x-www-form-urlencoded';

function mediaType(request: FastifyRequest): string | undefined {
  return request.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
}

/**
 * Replaces the parsed body with plain string parameters. RFC 6749 section 3.2: the body is
 * application/x-www-form-urlencoded, parameters must not repeat, and empty ones count as omitted.
 * Runs as a preValidation hook, so the route's body schema sees the result.
 */
export async function requireFormParameters(request: FastifyRequest): Promise<void> {
  const type = mediaType(request);
  if (type !== undefined && type !== FORM_CONTENT_TYPE) {
    throw new OAuthError('invalid_request', `the request body must be ${FORM_CONTENT_TYPE}`);
  }
  const body = (request.body ?? {}) as Record<string, unknown>;
  if (typeof body !== 'object' || Array.isArray(body)) throw new OAuthError('invalid_request', `the request body must be ${FORM_CONTENT_TYPE}`);
  const parameters: FormParameters = {};
  for (const [name, value] of Object.entries(body)) {
    if (Array.isArray(value)) throw new OAuthError('invalid_request', `parameter ${name.slice(0, 64)} must not be repeated`);
    if (typeof value !== 'string') throw new OAuthError('invalid_request', `parameter ${name.slice(0, 64)} is malformed`);
    // PostgreSQL text cannot hold NUL, and no OAuth parameter has a use for it.
    if (value.includes('\u0000') || name.includes('\u0000')) throw new OAuthError('invalid_request', 'parameters must not contain NUL characters');
    if (value !== '') parameters[name] = value;
  }
  request.body = parameters;
}

/** The client id a request claims (Basic header or body), unauthenticated: for rate-limit keys and audit only. */
export function claimedClientId(request: FastifyRequest): string | undefined {
  const clean = (id: string) => id.replaceAll('\u0000', '').slice(0, 200) || undefined;
  const authorization = request.headers.authorization;
  if (isBasicAuthorization(authorization)) {
    try {
      return clean(parseBasicCredentials(authorization).clientId);
    } catch {
      return undefined;
    }
  }
  const body = request.body as Record<string, unknown> | undefined;
  const bodyId = body && typeof body === 'object' ? body.client_id : undefined;
  return typeof bodyId === 'string' ? clean(bodyId) : undefined;
}

/**
 * Rate-limit key: the claimed client and the caller's address, so one noisy client does not starve the
 * others. The claimed id is the caller's choice, so this limit alone does not stop a caller rotating
 * ids: failed authentications are also limited per address (FailedClientAuthentications).
 */
export function clientRateLimitKey(request: FastifyRequest): string {
  return `${claimedClientId(request) ?? '-'}|${request.ip}`;
}

/**
 * The second limit of the client endpoints, keyed on the caller's address alone: failed client
 * authentications per address in a fixed window. The per-route limit is keyed on what the caller
 * presents (the claimed client id, or at the token endpoint the refresh token or code), so without this
 * one a caller could rotate values for fresh buckets and write an audit row with every guess. Once an
 * address reaches `maxFailures` in a window, it is answered 429 before any database lookup and without
 * an audit row until the window ends; the moment it is reached is audited once (OAuthClientAuthThrottled).
 * Except for the clients that authenticated from that address in the last `rememberSuccessMs`: voice
 * platforms call from a few shared addresses all the time, so one caller's junk must not lock them out;
 * their requests are still checked, and a wrong secret among them is answered 429 unaudited too.
 * Counters live in this process (one per api-server instance); both tables are bounded, dropping the
 * oldest entries first.
 */
export class FailedClientAuthentications {
  private readonly windows = new Map<string, { startedAt: number; failures: number }>();
  /** Per address, the clients that authenticated from it and when they last did; addresses and clients in the order of their last success. */
  private readonly successes = new Map<string, Map<string, number>>();

  constructor(
    readonly maxFailures = 30,
    readonly windowMs = 60_000,
    private readonly maxAddresses = 10_000,
    readonly rememberSuccessMs = 3_600_000,
    private readonly maxClientsPerAddress = 16,
  ) {}

  /** Whether the address may try to authenticate now. */
  allowed(ip: string, now = Date.now()): boolean {
    const window = this.current(ip, now);
    return !window || window.failures < this.maxFailures;
  }

  /** Counts a failure; true when it is the one that reaches the limit (audit that one). */
  recordFailure(ip: string, now = Date.now()): boolean {
    let window = this.current(ip, now);
    if (!window) {
      if (this.windows.size >= this.maxAddresses) this.evict(now);
      window = { startedAt: now, failures: 0 };
      this.windows.set(ip, window);
    }
    window.failures += 1;
    return window.failures === this.maxFailures;
  }

  /** Remembers that the client authenticated from the address, so a throttled address still lets it try. */
  recordSuccess(ip: string, clientId: string, now = Date.now()): void {
    const clients = this.successes.get(ip) ?? new Map<string, number>();
    this.successes.delete(ip);
    if (this.successes.size >= this.maxAddresses) this.evictSuccesses(now);
    this.successes.set(ip, clients);
    clients.delete(clientId);
    if (clients.size >= this.maxClientsPerAddress) clients.delete(clients.keys().next().value!);
    clients.set(clientId, now);
  }

  /** Whether the claimed client authenticated from the address within `rememberSuccessMs`. */
  authenticatedRecently(ip: string, clientId: string | undefined, now = Date.now()): boolean {
    const at = clientId === undefined ? undefined : this.successes.get(ip)?.get(clientId);
    return at !== undefined && now - at < this.rememberSuccessMs;
  }

  private current(ip: string, now: number) {
    const window = this.windows.get(ip);
    if (window && now - window.startedAt >= this.windowMs) {
      this.windows.delete(ip);
      return undefined;
    }
    return window;
  }

  private evict(now: number): void {
    for (const [ip, window] of this.windows) if (now - window.startedAt >= this.windowMs) this.windows.delete(ip);
    // Still full: drop the oldest (Map keeps insertion order, and windows are inserted as they start).
    for (const ip of this.windows.keys()) {
      if (this.windows.size < this.maxAddresses) break;
      this.windows.delete(ip);
    }
  }

  /** Addresses are kept in the order of their last success, so the first ones are the stalest. */
  private evictSuccesses(now: number): void {
    for (const [ip, clients] of this.successes) {
      const last = [...clients.values()].at(-1)!;
      if (this.successes.size < this.maxAddresses && now - last < this.rememberSuccessMs) break;
      this.successes.delete(ip);
    }
  }
}

/**
 * Authenticates the calling client (client_secret_basic, client_secret_post or none) and audits
 * every failed attempt as OAuthClientAuthFailed with the claimed client id and the caller's
 * address (never the secret), up to the per-address limit of FailedClientAuthentications. Past it,
 * the address is answered 429 before the database unless the claimed client authenticated from it
 * recently; such a client is checked, and passes or is answered 429 unaudited. `requireSecret`
 * refuses public clients (introspection).
 */
export async function authenticateCaller(
  app: FastifyInstance,
  request: FastifyRequest,
  parameters: FormParameters,
  endpoint: 'token' | 'introspection' | 'revocation',
  options: { requireSecret?: boolean } = {},
): Promise<OAuthClientRow> {
  const { db, audit } = app.services;
  const { failedClientAuthentications: limiter } = app.authorizationServer;
  const clientId = claimedClientId(request);
  const throttled = !limiter.allowed(request.ip);
  const tooMany = () => new OAuthError('temporarily_unavailable', 'too many failed client authentications from this address; try again later', 429);
  if (throttled && !limiter.authenticatedRecently(request.ip, clientId)) throw tooMany();
  const failed = async (error: OAuthError): Promise<never> => {
    if (throttled) throw tooMany();
    const entry = { actor: { type: 'client', id: clientId }, clientId, origin: requestOrigin(request) } as const;
    await audit.record({ ...entry, action: 'OAuthClientAuthFailed', outcome: 'failure', details: { endpoint, reason: error.description } });
    if (limiter.recordFailure(request.ip)) {
      await audit.record({
        ...entry,
        action: 'OAuthClientAuthThrottled',
        outcome: 'failure',
        details: { endpoint, failures: limiter.maxFailures, window_seconds: limiter.windowMs / 1000 },
      });
    }
    throw error;
  };
  let client: OAuthClientRow;
  try {
    client = await authenticateClient(db, {
      authorization: request.headers.authorization,
      bodyClientId: parameters.client_id,
      bodyClientSecret: parameters.client_secret,
    });
  } catch (error) {
    if (error instanceof OAuthError && error.code === 'invalid_client') return failed(error);
    throw error;
  }
  if (options.requireSecret && client.clientType !== 'confidential') {
    return failed(new OAuthError('invalid_client', `${endpoint} requires an authenticated confidential client`));
  }
  limiter.recordSuccess(request.ip, client.id);
  return client;
}

/** Body schema fields: bounded strings, so absurd values are refused as invalid_request before any work. */
export function stringField(maxLength: number) {
  return { type: 'string', maxLength } as const;
}

/** The body of introspection and revocation requests (RFC 7662 section 2.1, RFC 7009 section 2.1). */
export const tokenParametersSchema = {
  type: 'object',
  properties: {
    token: stringField(8192),
    token_type_hint: stringField(64),
    client_id: stringField(256),
    client_secret: stringField(512),
  },
} as const;
