import { createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTHeaderParameters } from 'jose';
import { sql } from 'slonik';
import { z } from 'zod';
import { hashBearerValue } from '../../platform/secrets';
import type { OAuthTestServer } from '../helpers/oauth-server';
import { authorizePath, TestBrowser, type AuthorizeParams } from '../helpers/oauth-browser';
import { postAsClient, type TestClient } from '../oauth/token-helpers';

/** Helpers for the OpenID Provider's tests: a relying party's client, the browser's way through authorize, and id_token checks. */

export const CALLBACK = 'https://rp.example/callback';
export const LOGGED_OUT = 'https://rp.example/logged-out';
export const OIDC_SCOPES = ['openid', 'profile', 'email', 'properties:read', 'offline_access'];

/** A confidential relying party (client_secret_basic) with a callback and a post-logout redirect URI. */
export function createRelyingParty(server: OAuthTestServer, options: Parameters<OAuthTestServer['createClient']>[0] = {}): Promise<TestClient> {
  return server.createClient({ name: 'Relying party', redirectUris: [CALLBACK], postLogoutRedirectUris: [LOGGED_OUT], scopes: OIDC_SCOPES, ...options });
}

/** An authorize URL for the relying party (openid by default). */
export function rpAuthorizePath(client: TestClient, params: Omit<AuthorizeParams, 'clientId'> = {}) {
  return authorizePath({ clientId: client.client.id, redirectUri: CALLBACK, scope: 'openid', ...params });
}

/**
 * Follows /oauth/authorize in a signed-in browser: through the consent page (approving) when it is
 * shown, to the redirect back to the client.
 */
export async function authorizeThrough(browser: TestBrowser, path: string): Promise<URL> {
  let response = await browser.get(path);
  if (response.status === 200) response = await browser.submit(await response.text(), {}, 'approve');
  if (response.status !== 303) throw new Error(`authorize answered ${response.status}: ${await response.text()}`);
  return new URL(response.headers.get('location')!, browser.url('/'));
}

export interface CodeResponse {
  status: number;
  body: Record<string, unknown>;
}

export async function exchangeCode(server: OAuthTestServer, client: TestClient, callback: URL, verifier: string): Promise<CodeResponse> {
  const code = callback.searchParams.get('code');
  if (!code) throw new Error(`no code in ${callback.toString()}`);
  return postAsClient(server, '/oauth/token', client, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK, code_verifier: verifier });
}

/** Signs in through authorize and the token endpoint; the tokens the relying party gets. */
export async function signInWithOpenId(server: OAuthTestServer, client: TestClient, browser: TestBrowser, params: Omit<AuthorizeParams, 'clientId'> = {}) {
  const { path, pkce } = rpAuthorizePath(client, params);
  const response = await exchangeCode(server, client, await authorizeThrough(browser, path), pkce.verifier);
  if (response.status !== 200) throw new Error(`code exchange answered ${response.status}: ${JSON.stringify(response.body)}`);
  return response.body as { access_token: string; refresh_token?: string; id_token?: string; scope: string };
}

/** The id_token checked as a relying party would: our JWKS, issuer, RS256; header and claims. */
export async function verifiedIdToken(server: OAuthTestServer, idToken: string): Promise<{ header: JWTHeaderParameters; claims: JWTPayload & Record<string, unknown> }> {
  const { payload, protectedHeader } = await jwtVerify(idToken, createRemoteJWKSet(new URL(`${server.url}/oauth/jwks`)), {
    issuer: server.url,
    algorithms: ['RS256'],
  });
  return { header: protectedHeader, claims: payload };
}

/** The PM session of the browser's session cookie: its id (`sid`) and start (`auth_time`, epoch seconds). */
export async function browserSession(server: OAuthTestServer, browser: TestBrowser): Promise<{ id: string; authTime: number; revoked: boolean }> {
  const token = browser.cookies.get('pm_session');
  if (!token) throw new Error('the browser has no session cookie');
  const row = await server.db.one(sql.type(z.object({ id: z.string(), createdAt: z.number(), revoked: z.boolean() }))`
    SELECT id, created_at AS "createdAt", revoked_at IS NOT NULL AS revoked FROM user_sessions WHERE token_hash = ${hashBearerValue(token)}`);
  return { id: row.id, authTime: Math.floor(row.createdAt / 1000), revoked: row.revoked };
}

/** Makes the browser's session look as if it signed in `seconds` ago (auth_time in the past). */
export async function ageSession(server: OAuthTestServer, sessionId: string, seconds: number): Promise<void> {
  await server.db.query(sql.unsafe`UPDATE user_sessions SET created_at = now() - make_interval(secs => ${seconds}) WHERE id = ${sessionId}`);
}
