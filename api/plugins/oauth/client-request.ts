import type { FastifyInstance, FastifyRequest } from 'fastify';
import { requestOrigin } from '../../request-origin';
import { authenticateClient, type OAuthClientRow } from '../../../platform/oauth-server/clients';
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
  const authorization = request.headers.authorization;
  if (authorization && /^basic /i.test(authorization)) {
    const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
    const separator = decoded.indexOf(':');
    if (separator > 0) {
      try {
        return decodeURIComponent(decoded.slice(0, separator).replace(/\+/g, ' ')).replaceAll('\u0000', '').slice(0, 200);
      } catch {
        return undefined;
      }
    }
    return undefined;
  }
  const body = request.body as Record<string, unknown> | undefined;
  const bodyId = body && typeof body === 'object' ? body.client_id : undefined;
  return typeof bodyId === 'string' ? bodyId.replaceAll('\u0000', '').slice(0, 200) : undefined;
}

/** Rate-limit key: the claimed client and the caller's address, so one noisy client does not starve the others. */
export function clientRateLimitKey(request: FastifyRequest): string {
  return `${claimedClientId(request) ?? '-'}|${request.ip}`;
}

/**
 * Authenticates the calling client (client_secret_basic, client_secret_post or none) and audits
 * every failed attempt as OAuthClientAuthFailed with the claimed client id and the caller's
 * address (never the secret). `requireSecret` refuses public clients (introspection).
 */
export async function authenticateCaller(
  app: FastifyInstance,
  request: FastifyRequest,
  parameters: FormParameters,
  endpoint: 'token' | 'introspection' | 'revocation',
  options: { requireSecret?: boolean } = {},
): Promise<OAuthClientRow> {
  const { db, audit } = app.services;
  const failed = async (error: OAuthError): Promise<never> => {
    const clientId = claimedClientId(request);
    await audit.record({
      action: 'OAuthClientAuthFailed',
      outcome: 'failure',
      actor: { type: 'client', id: clientId },
      clientId,
      origin: requestOrigin(request),
      details: { endpoint, reason: error.description },
    });
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
