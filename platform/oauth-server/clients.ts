import { randomBytes } from 'node:crypto';
import type { CommonQueryMethods } from 'slonik';
import { findClientWithSecretHash, insertClient, type NewClient, type OAuthClientRow } from '../../db/queries/oauth-clients';
import { hashBearerValue, matchesStoredHash, randomToken } from '../secrets';
import { OAuthError } from './errors';

export type { OAuthClientRow } from '../../db/queries/oauth-clients';

export const SUPPORTED_GRANT_TYPES = ['authorization_code', 'refresh_token', 'client_credentials'] as const;

export function newClientId(): string {
  return `c_${randomBytes(16).toString('base64url')}`;
}

/** Creates a client; the secret is returned here once and stored only as its hash. */
export async function registerClient(
  db: CommonQueryMethods,
  input: Omit<NewClient, 'id' | 'secretHash' | 'clientType'>,
): Promise<{ client: OAuthClientRow; clientSecret: string | undefined }> {
  const confidential = input.tokenEndpointAuthMethod !== 'none';
  const clientSecret = confidential ? randomToken() : undefined;
  const client = await insertClient(db, {
    ...input,
    id: newClientId(),
    clientType: confidential ? 'confidential' : 'public',
    secretHash: clientSecret ? hashBearerValue(clientSecret) : null,
  });
  return { client, clientSecret };
}

function hostIsLoopback(hostname: string): boolean {
  return hostname === '127.0.0.1' || hostname === '[::1]';
}

/**
 * A redirect URI a client may register: absolute, no fragment, https, or http on a loopback address
 * (native apps, RFC 8252 section 7.3). The host must be a DNS name (letters, digits, hyphens) or an
 * IP literal: the URL parser lets through characters such as `;`, `,` or `'`, which would change the
 * meaning of the Content-Security-Policy the origin is written into.
 */
export function redirectUriProblem(uri: string): string | undefined {
  if (!URL.canParse(uri)) return 'is not an absolute URI';
  const url = new URL(uri);
  if (url.hash || uri.includes('#')) return 'must not contain a fragment';
  if (url.username || url.password) return 'must not contain credentials';
  // The parser has already normalised IPv4 literals to dotted form and validated IPv6 ones.
  const host = url.hostname;
  const ipv6 = host.startsWith('[') && host.endsWith(']');
  const dnsName =
    host.length <= 253 && host.split('.').every((label) => /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(label));
  if (!ipv6 && !dnsName) return 'must name its host as a DNS name or an IP address';
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && hostIsLoopback(url.hostname)) return undefined;
  return 'must use https (or http on 127.0.0.1 or [::1])';
}

/**
 * Exact string comparison (RFC 9700 section 4.1.3); the one exception is the port of a loopback
 * redirect URI, which native apps pick at run time (RFC 8252 section 7.3).
 */
export function redirectUriMatches(registered: readonly string[], requested: string): boolean {
  if (registered.includes(requested)) return true;
  if (!URL.canParse(requested)) return false;
  const candidate = new URL(requested);
  if (candidate.protocol !== 'http:' || !hostIsLoopback(candidate.hostname)) return false;
  return registered.some((uri) => {
    const url = new URL(uri);
    if (url.protocol !== 'http:' || url.hostname !== candidate.hostname) return false;
    url.port = candidate.port;
    return url.toString() === candidate.toString() && requested === candidate.toString();
  });
}

export interface ClientCredentialsPresented {
  authorization: string | undefined;
  bodyClientId: string | undefined;
  bodyClientSecret: string | undefined;
}

/** Whether an Authorization header uses the Basic scheme (the name is case-insensitive, RFC 9110 section 11.1). */
export function isBasicAuthorization(header: string | undefined): header is string {
  return header !== undefined && /^basic /i.test(header);
}

/** Client credentials of a Basic header; RFC 6749 section 2.3.1: both parts are form-urlencoded before base64. */
export function parseBasicCredentials(header: string): { clientId: string; clientSecret: string } {
  const encoded = header.slice('Basic '.length).trim();
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const separator = decoded.indexOf(':');
  if (separator < 0) throw new OAuthError('invalid_client', 'malformed Basic credentials');
  try {
    const decode = (part: string) => decodeURIComponent(part.replace(/\+/g, ' '));
    return { clientId: decode(decoded.slice(0, separator)), clientSecret: decode(decoded.slice(separator + 1)) };
  } catch {
    throw new OAuthError('invalid_client', 'malformed Basic credentials');
  }
}

/**
 * Authenticates the client of a token, introspection or revocation request by the method it
 * registered: client_secret_basic, client_secret_post, or none (public clients, identified only).
 * Using more than one method at once is refused (RFC 6749 section 2.3).
 */
export async function authenticateClient(db: CommonQueryMethods, presented: ClientCredentialsPresented): Promise<OAuthClientRow> {
  const basic = isBasicAuthorization(presented.authorization) ? parseBasicCredentials(presented.authorization) : undefined;
  if (basic && (presented.bodyClientSecret !== undefined || (presented.bodyClientId !== undefined && presented.bodyClientId !== basic.clientId))) {
    throw new OAuthError('invalid_request', 'use one client authentication method only');
  }
  const clientId = basic?.clientId ?? presented.bodyClientId;
  if (!clientId) throw new OAuthError('invalid_client', 'client authentication is required');
  // Never a valid client id, and PostgreSQL text cannot hold it (a query would fail with a 500).
  if (clientId.includes('\u0000')) throw new OAuthError('invalid_client', 'unknown or revoked client');
  const method = basic ? 'client_secret_basic' : presented.bodyClientSecret !== undefined ? 'client_secret_post' : 'none';

  const client = await findClientWithSecretHash(db, clientId);
  if (!client || client.revokedAt !== null) throw new OAuthError('invalid_client', 'unknown or revoked client');
  if (client.tokenEndpointAuthMethod !== method) {
    throw new OAuthError('invalid_client', `this client authenticates with ${client.tokenEndpointAuthMethod}`);
  }
  if (method !== 'none') {
    const secret = basic?.clientSecret ?? presented.bodyClientSecret!;
    if (!client.secretHash || !matchesStoredHash(secret, client.secretHash)) throw new OAuthError('invalid_client', 'client authentication failed');
  }
  const { secretHash: _secretHash, ...row } = client;
  return row;
}
