import { timingSafeEqual } from 'node:crypto';
import type { CommonQueryMethods, DatabasePool } from 'slonik';
import { findClient, type OAuthClientRow } from '../../db/queries/oauth-clients';
import { findLiveGrantFor } from '../../db/queries/oauth-grants';
import {
  findAuthorizationRequest,
  insertAuthorizationRequest,
  markAuthorizationRequestDecided,
  type AuthorizationRequestRow,
} from '../../db/queries/oauth-authorization-requests';
import type { AuditEntry, AuditLog } from '../audit';
import { hashBearerValue, randomToken } from '../secrets';
import { issueAuthorizationCode } from './authorization-codes';
import { redirectUriMatches } from './clients';
import { OAuthError, type OAuthErrorCode } from './errors';
import { coversScopes, grantableScopes, parseScope } from './scopes';

export const AUTHORIZATION_REQUEST_TTL_SECONDS = 600;

/** An S256 code challenge is the base64url SHA-256 of the verifier: exactly 43 characters. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
const MAX_STATE_LENGTH = 2048;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface AuthorizeQuery {
  response_type?: string;
  client_id?: string;
  redirect_uri?: string;
  scope?: string;
  state?: string;
  code_challenge?: string;
  code_challenge_method?: string;
}

export interface ValidAuthorizationRequest {
  client: OAuthClientRow;
  redirectUri: string;
  scopes: string[];
  state: string | undefined;
  codeChallenge: string;
}

/**
 * What /oauth/authorize does with a request before it looks at the user:
 * - `page`: the client or the redirect URI cannot be trusted, so the error is shown, never redirected;
 * - `redirect`: an error the client must hear about, sent to its (verified) redirect URI;
 * - `valid`: go on to login and consent.
 */
export type AuthorizationRequestCheck =
  | { kind: 'page'; message: string }
  | { kind: 'redirect'; redirectUri: string; params: Record<string, string> }
  | { kind: 'valid'; request: ValidAuthorizationRequest };

export async function checkAuthorizationRequest(db: CommonQueryMethods, query: AuthorizeQuery): Promise<AuthorizationRequestCheck> {
  if (!query.client_id) return { kind: 'page', message: 'The request does not say which application is asking (client_id is missing).' };
  const client = await findClient(db, query.client_id);
  if (!client || client.revokedAt !== null) return { kind: 'page', message: 'The application that sent you here is unknown or no longer allowed.' };
  if (!query.redirect_uri) return { kind: 'page', message: 'The request does not say where to send you back (redirect_uri is missing).' };
  if (!redirectUriMatches(client.redirectUris, query.redirect_uri)) {
    return { kind: 'page', message: 'The address the application wants to send you back to is not registered for it.' };
  }
  const redirectUri = query.redirect_uri;
  const state = query.state !== undefined && query.state.length <= MAX_STATE_LENGTH ? query.state : undefined;
  const fail = (error: OAuthErrorCode, description: string): AuthorizationRequestCheck => ({
    kind: 'redirect',
    redirectUri,
    params: { error, error_description: description, ...(state !== undefined ? { state } : {}) },
  });

  if (query.state !== undefined && state === undefined) return fail('invalid_request', `state is longer than ${MAX_STATE_LENGTH} characters`);
  if (!query.response_type) return fail('invalid_request', 'response_type is required');
  if (query.response_type !== 'code') return fail('unsupported_response_type', 'only response_type=code is supported');
  if (!client.grantTypes.includes('authorization_code')) return fail('unauthorized_client', 'this client may not use the authorization code grant');
  if (!query.code_challenge) return fail('invalid_request', 'code_challenge is required (PKCE with S256)');
  if (query.code_challenge_method !== 'S256') return fail('invalid_request', 'code_challenge_method must be S256');
  if (!S256_CHALLENGE.test(query.code_challenge)) return fail('invalid_request', 'code_challenge is not a valid S256 challenge');
  let scopes: string[];
  try {
    scopes = grantableScopes(parseScope(query.scope), client.scopes);
  } catch (error) {
    if (error instanceof OAuthError) return fail(error.code, error.description);
    throw error;
  }
  if (scopes.length === 0) return fail('invalid_scope', 'no scope requested and the client has no default scope');
  return { kind: 'valid', request: { client, redirectUri, scopes, state, codeChallenge: query.code_challenge } };
}

/** The redirect URI with the authorization response parameters added; `iss` always (RFC 9207). */
export function authorizationResponseUrl(redirectUri: string, params: Record<string, string>, issuer: string): string {
  const url = new URL(redirectUri);
  for (const [name, value] of Object.entries({ ...params, iss: issuer })) url.searchParams.append(name, value);
  return url.toString();
}

export interface AuthorizationContext {
  db: DatabasePool;
  audit: AuditLog;
  issuer: string;
  codeLifetimeSeconds: number;
}

/** Issues a code at once when the user's live grant to the client already covers the scopes; else null. */
export async function authorizeWithExistingGrant(
  context: AuthorizationContext,
  request: ValidAuthorizationRequest,
  userId: string,
  origin: AuditEntry['origin'],
): Promise<string | null> {
  const grant = await findLiveGrantFor(context.db, userId, request.client.id);
  if (!grant || !coversScopes(grant.scopes, request.scopes)) return null;
  return issueCode(context, { ...request, clientId: request.client.id }, userId, origin, 'existing_grant');
}

async function issueCode(
  context: AuthorizationContext,
  request: Pick<ValidAuthorizationRequest, 'redirectUri' | 'scopes' | 'state' | 'codeChallenge'> & { clientId: string },
  userId: string,
  origin: AuditEntry['origin'],
  consent: 'existing_grant' | 'approved',
  inTransaction?: (transaction: CommonQueryMethods) => Promise<boolean>,
): Promise<string | null> {
  return context.db.transaction(async (transaction) => {
    if (inTransaction && !(await inTransaction(transaction))) return null;
    const { code } = await issueAuthorizationCode(
      transaction,
      { clientId: request.clientId, userId, redirectUri: request.redirectUri, scopes: request.scopes, codeChallenge: request.codeChallenge },
      context.codeLifetimeSeconds,
    );
    await context.audit.record(
      {
        action: 'OAuthAuthorize',
        outcome: 'success',
        actor: { type: 'user', id: userId },
        userId,
        clientId: request.clientId,
        origin,
        details: { scopes: request.scopes, consent },
      },
      transaction,
    );
    return authorizationResponseUrl(request.redirectUri, { code, ...(request.state !== undefined ? { state: request.state } : {}) }, context.issuer);
  });
}

/** Stores the request between the consent page and the decision; the CSRF token is returned once and stored as its hash. */
export async function startConsent(
  db: CommonQueryMethods,
  request: ValidAuthorizationRequest,
  userId: string,
): Promise<{ requestId: string; csrfToken: string }> {
  const csrfToken = randomToken();
  const requestId = await insertAuthorizationRequest(db, {
    clientId: request.client.id,
    userId,
    redirectUri: request.redirectUri,
    scopes: request.scopes,
    state: request.state ?? null,
    codeChallenge: request.codeChallenge,
    csrfHash: hashBearerValue(csrfToken),
    expiresAt: new Date(Date.now() + AUTHORIZATION_REQUEST_TTL_SECONDS * 1000),
  });
  return { requestId, csrfToken };
}

export type DecisionOutcome =
  | { kind: 'forbidden'; message: string }
  | { kind: 'refused'; message: string }
  | { kind: 'redirect'; location: string };

function csrfMatches(presented: string, storedHash: string): boolean {
  const a = Buffer.from(hashBearerValue(presented));
  const b = Buffer.from(storedHash);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The consent decision. Only the user the request was shown to, with the CSRF token of that page,
 * may decide, once, before the request expires. Approve issues a code (and records the grant);
 * deny answers access_denied. Either way the client hears back with state and iss.
 */
export async function decideAuthorizationRequest(
  context: AuthorizationContext,
  input: { requestId: string | undefined; csrfToken: string | undefined; decision: string | undefined },
  userId: string | null,
  origin: AuditEntry['origin'],
): Promise<DecisionOutcome> {
  const forbidden: DecisionOutcome = { kind: 'forbidden', message: 'This form was not sent from the consent page we showed you. Nothing was authorized.' };
  if (!input.requestId || !UUID.test(input.requestId) || !input.csrfToken) return forbidden;
  const request: AuthorizationRequestRow | null = await findAuthorizationRequest(context.db, input.requestId);
  if (!request || !userId || request.userId !== userId || !csrfMatches(input.csrfToken, request.csrfHash)) return forbidden;
  if (input.decision !== 'approve' && input.decision !== 'deny') return { kind: 'refused', message: 'Choose Allow or Deny.' };
  if (request.decidedAt !== null) return { kind: 'refused', message: 'This request was already answered. Start again from the application.' };
  if (request.expiresAt <= Date.now()) return { kind: 'refused', message: 'This request has expired. Start again from the application.' };

  const client = await findClient(context.db, request.clientId);
  if (!client || client.revokedAt !== null) return { kind: 'refused', message: 'The application is no longer allowed.' };
  // The client's registration may have changed while the page was open: never send anything to an address it no longer has.
  if (!redirectUriMatches(client.redirectUris, request.redirectUri) || !coversScopes(client.scopes, request.scopes)) {
    return { kind: 'refused', message: 'The application changed its registration. Start again from the application.' };
  }
  const claim = (transaction: CommonQueryMethods) => markAuthorizationRequestDecided(transaction, request.id);
  const state = request.state ?? undefined;
  const refusedAgain: DecisionOutcome = { kind: 'refused', message: 'This request was already answered or has expired. Start again from the application.' };

  if (input.decision === 'deny') {
    const claimed = await context.db.transaction(async (transaction) => {
      if (!(await claim(transaction))) return false;
      await context.audit.record(
        { action: 'OAuthAuthorize', outcome: 'failure', actor: { type: 'user', id: userId }, userId, clientId: client.id, origin, details: { scopes: request.scopes, consent: 'denied' } },
        transaction,
      );
      return true;
    });
    if (!claimed) return refusedAgain;
    const params = { error: 'access_denied', error_description: 'The user denied the request', ...(state !== undefined ? { state } : {}) };
    return { kind: 'redirect', location: authorizationResponseUrl(request.redirectUri, params, context.issuer) };
  }

  const location = await issueCode(
    context,
    { clientId: client.id, redirectUri: request.redirectUri, scopes: request.scopes, state, codeChallenge: request.codeChallenge },
    userId,
    origin,
    'approved',
    claim,
  );
  return location ? { kind: 'redirect', location } : refusedAgain;
}
