import { createPkcePair } from '../../platform/pkce';
import { issueAuthorizationCode } from '../../platform/oauth-server/authorization-codes';
import type { OAuthClientRow } from '../../platform/oauth-server/clients';
import type { OAuthTestServer } from '../helpers/oauth-server';

/** Helpers for the token, introspection and revocation tests: plain HTTP, as a client would send it. */

export interface TestClient {
  client: OAuthClientRow;
  clientSecret: string | undefined;
}

export function basicAuth(clientId: string, clientSecret: string): string {
  const encode = (value: string) => encodeURIComponent(value);
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`;
}

export interface FormResponse {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  text: string;
}

export async function postForm(
  server: OAuthTestServer,
  path: string,
  parameters: Record<string, string> | URLSearchParams | string,
  headers: Record<string, string> = {},
): Promise<FormResponse> {
  const body = typeof parameters === 'string' ? parameters : new URLSearchParams(parameters).toString();
  const response = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body,
  });
  const text = await response.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    parsed = {};
  }
  return { status: response.status, headers: response.headers, body: parsed, text };
}

/** Posts as the client, authenticating with client_secret_basic (or client_id alone for public clients). */
export function postAsClient(server: OAuthTestServer, path: string, client: TestClient, parameters: Record<string, string>): Promise<FormResponse> {
  if (client.clientSecret === undefined) return postForm(server, path, { ...parameters, client_id: client.client.id });
  return postForm(server, path, parameters, { authorization: basicAuth(client.client.id, client.clientSecret) });
}

export interface IssuedCode {
  code: string;
  verifier: string;
  grantId: string;
  redirectUri: string;
}

/** An authorization code as the authorize endpoint would issue it (consent given), with its PKCE verifier. */
export async function issueCode(
  server: OAuthTestServer,
  client: TestClient,
  userId: string,
  scopes: string[] = ['properties:read', 'offline_access'],
): Promise<IssuedCode> {
  const pkce = createPkcePair();
  const redirectUri = client.client.redirectUris[0]!;
  const { code, grantId } = await issueAuthorizationCode(
    server.db,
    { clientId: client.client.id, userId, redirectUri, scopes, codeChallenge: pkce.challenge },
    new Date(server.app.authorizationServer.tokens.clock().getTime() + server.config.lifetimes.authorizationCodeSeconds * 1000),
  );
  return { code, verifier: pkce.verifier, grantId, redirectUri };
}

export function exchangeCode(server: OAuthTestServer, client: TestClient, issued: IssuedCode): Promise<FormResponse> {
  return postAsClient(server, '/oauth/token', client, {
    grant_type: 'authorization_code',
    code: issued.code,
    redirect_uri: issued.redirectUri,
    code_verifier: issued.verifier,
  });
}

export interface Tokens {
  access_token: string;
  refresh_token: string;
  scope: string;
  expires_in: number;
  token_type: string;
}

/** Code issued and exchanged: the client's first tokens. */
export async function obtainTokens(server: OAuthTestServer, client: TestClient, userId: string, scopes?: string[]): Promise<Tokens> {
  const response = await exchangeCode(server, client, await issueCode(server, client, userId, scopes));
  if (response.status !== 200) throw new Error(`code exchange failed: ${response.status} ${response.text}`);
  return response.body as unknown as Tokens;
}

export function refresh(server: OAuthTestServer, client: TestClient, refreshToken: string, extra: Record<string, string> = {}): Promise<FormResponse> {
  return postAsClient(server, '/oauth/token', client, { grant_type: 'refresh_token', refresh_token: refreshToken, ...extra });
}

export async function introspect(server: OAuthTestServer, client: TestClient, token: string, hint?: string): Promise<Record<string, unknown>> {
  const response = await postAsClient(server, '/oauth/introspect', client, hint ? { token, token_type_hint: hint } : { token });
  if (response.status !== 200) throw new Error(`introspection failed: ${response.status} ${response.text}`);
  return response.body;
}

export async function auditRows(server: OAuthTestServer, action: string): Promise<Array<Record<string, unknown>>> {
  const { sql } = await import('slonik');
  const { z } = await import('zod');
  const rows = await server.db.any(sql.type(z.object({ row: z.record(z.unknown()) }))`
    SELECT row_to_json(a) AS row FROM audit_log a WHERE action = ${action} ORDER BY id`);
  return rows.map((entry) => entry.row);
}

export async function grantOfRefreshToken(server: OAuthTestServer, refreshToken: string): Promise<string> {
  const { sql } = await import('slonik');
  const { z } = await import('zod');
  const { hashBearerValue } = await import('../../platform/secrets');
  return server.db.oneFirst(sql.type(z.object({ grantId: z.string() }))`
    SELECT grant_id AS "grantId" FROM oauth_refresh_tokens WHERE token_hash = ${hashBearerValue(refreshToken)}`);
}

/** Sessions of this test database waiting for a lock (row locks show as Lock waits on a transaction id). */
async function lockWaiters(db: import('slonik').CommonQueryMethods): Promise<number> {
  const { sql } = await import('slonik');
  const { z } = await import('zod');
  // Inside a transaction pg_stat_activity is a snapshot taken at its first read; drop it to see the present.
  await db.query(sql.unsafe`SELECT pg_stat_clear_snapshot()`);
  return db.oneFirst(sql.type(z.object({ count: z.number() }))`
    SELECT count(*)::int AS count FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
}

/** Polls, on `db` (the lock holder: slonik refuses pool queries inside a transaction), until `count` sessions of this test database wait for a lock. */
export async function waitForLockWaiters(db: import('slonik').CommonQueryMethods, count: number, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await lockWaiters(db)) < count) {
    if (Date.now() > deadline) {
      const { sql } = await import('slonik');
      const { z } = await import('zod');
      const activity = await db.any(sql.type(z.object({ state: z.string().nullable(), wait: z.string().nullable(), query: z.string() }))`
        SELECT state, wait_event_type || ':' || wait_event AS wait, left(query, 120) AS query FROM pg_stat_activity WHERE datname = current_database()`);
      throw new Error(`expected ${count} sessions waiting for a lock: ${JSON.stringify(activity)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Holds the grant row locked (as a grant or client revocation would) while `during` runs, with the
 * holding transaction as its argument; commits when `during` settles.
 */
export async function withGrantLocked<T>(
  server: OAuthTestServer,
  grantId: string,
  during: (holder: import('slonik').DatabaseTransactionConnection) => Promise<T>,
): Promise<T> {
  const { sql } = await import('slonik');
  return server.db.transaction(async (holder) => {
    await holder.query(sql.unsafe`SELECT id FROM oauth_grants WHERE id = ${grantId} FOR UPDATE`);
    return during(holder);
  });
}
