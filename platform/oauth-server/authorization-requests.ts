import type { CommonQueryMethods, DatabasePool } from 'slonik';
import { UUID } from '../uuid';
import { findClient, type OAuthClientRow } from '../../db/queries/oauth-clients';
import { findLiveGrantFor } from '../../db/queries/oauth-grants';
import type { PmSession } from '../../db/queries/users';
import {
  claimPendingAuthorizationRequest,
  findAuthorizationRequest,
  findPendingAuthorizationRequest,
  insertAuthorizationRequest,
  insertPendingAuthorizationRequest,
  markAuthorizationRequestDecided,
  type AuthorizationRequestRow,
} from '../../db/queries/oauth-authorization-requests';
import type { AuditEntry, AuditLog } from '../audit';
import { hashBearerValue, matchesStoredHash, randomToken } from '../secrets';
import { issueAuthorizationCode } from './authorization-codes';
import { mayOmitPkce } from './client-metadata';
import { redirectUriMatches, redirectUriProblem } from './clients';
import { OAuthError, type OAuthErrorCode } from './errors';
import { coversScopes, grantableScopes, parseScope } from './scopes';
import { parseOpenIdParameters, parseStoredPrompt, signInServes, storedPrompt, type PromptValue, type SignInRequirements } from './oidc-request';

export const AUTHORIZATION_REQUEST_TTL_SECONDS = 600;

/** An S256 code challenge is the base64url SHA-256 of the verifier: exactly 43 characters. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
const MAX_STATE_LENGTH = 2048;

export interface AuthorizeQuery {
  response_type?: string;
  client_id?: string;
  redirect_uri?: string;
  scope?: string;
  state?: string;
  code_challenge?: string;
  code_challenge_method?: string;
  nonce?: string;
  prompt?: string;
  max_age?: string;
  id_token_hint?: string;
  /** OpenID Connect request objects, which this server does not take. */
  request?: string;
  request_uri?: string;
}

export interface ValidAuthorizationRequest extends SignInRequirements {
  client: OAuthClientRow;
  redirectUri: string;
  scopes: string[];
  state: string | undefined;
  /** Null only for a client that may omit PKCE (mayOmitPkce) and sent no challenge. */
  codeChallenge: string | null;
  /** Only on the request as it arrives (checked with prompt=none); never stored. */
  idTokenHint?: string | undefined;
}

/** The signed-in user and the PM session they are signed in with (its id is the `sid`, its start the `auth_time`). */
export interface SignedIn {
  userId: string;
  session: PmSession;
}

/**
 * What /oauth/authorize does with a request before it looks at the user:
 * - `page`: the client or the redirect URI cannot be trusted, so the error is shown, never redirected;
 * - `redirect`: an error the client must hear about, sent to its (verified) redirect URI;
 * - `valid`: go on to login and consent.
 */
export type AuthorizationRequestCheck =
  | { kind: 'page'; message: string; rejection?: AuthorizeRejection }
  | { kind: 'redirect'; redirectUri: string; params: Record<string, string>; rejection: AuthorizeRejection }
  | { kind: 'valid'; request: ValidAuthorizationRequest };

/** Why a request of a known client was refused, for the OAuthAuthorizeRejected audit row. */
export interface AuthorizeRejection {
  clientId: string;
  reason: string;
  /** The redirect URI asked for, when it is the problem (bounded; never a secret). */
  redirectUri?: string;
}

const MAX_AUDITED_URI_LENGTH = 512;

export async function checkAuthorizationRequest(db: CommonQueryMethods, query: AuthorizeQuery): Promise<AuthorizationRequestCheck> {
  if (!query.client_id) return { kind: 'page', message: 'The request does not say which application is asking (client_id is missing).' };
  const client = await findClient(db, query.client_id);
  if (!client || client.revokedAt !== null) return { kind: 'page', message: 'The application that sent you here is unknown or no longer allowed.' };
  const rejected = (reason: string, uri?: string): AuthorizeRejection => ({
    clientId: client.id,
    reason,
    ...(uri !== undefined ? { redirectUri: uri.slice(0, MAX_AUDITED_URI_LENGTH) } : {}),
  });
  if (!query.redirect_uri) {
    return { kind: 'page', message: 'The request does not say where to send you back (redirect_uri is missing).', rejection: rejected('redirect_uri_missing') };
  }
  // A registered URI that no longer passes today's rules (e.g. a host that is not a DNS name) is not used either.
  if (!redirectUriMatches(client.redirectUris, query.redirect_uri) || redirectUriProblem(query.redirect_uri) !== undefined) {
    return {
      kind: 'page',
      message: 'The address the application wants to send you back to is not registered for it.',
      rejection: rejected('redirect_uri_mismatch', query.redirect_uri),
    };
  }
  const redirectUri = query.redirect_uri;
  const state = query.state !== undefined && query.state.length <= MAX_STATE_LENGTH ? query.state : undefined;
  const fail = (error: OAuthErrorCode, description: string, reason: string): AuthorizationRequestCheck => ({
    kind: 'redirect',
    redirectUri,
    params: { error, error_description: description, ...(state !== undefined ? { state } : {}) },
    rejection: rejected(reason),
  });

  if (query.state !== undefined && state === undefined) return fail('invalid_request', `state is longer than ${MAX_STATE_LENGTH} characters`, 'state_too_long');
  if (!query.response_type) return fail('invalid_request', 'response_type is required', 'response_type_missing');
  if (query.response_type !== 'code') return fail('unsupported_response_type', 'only response_type=code is supported', 'response_type_unsupported');
  if (!client.grantTypes.includes('authorization_code')) {
    return fail('unauthorized_client', 'this client may not use the authorization code grant', 'grant_type_not_allowed');
  }
  // A client that may omit PKCE and sends none of it gets a code without a challenge (an empty parameter
  // counts as omitted, RFC 6749 section 3.1); whatever PKCE a request does send is checked as for every client.
  let codeChallenge: string | null = null;
  if (query.code_challenge || query.code_challenge_method || !mayOmitPkce(client)) {
    if (!query.code_challenge) return fail('invalid_request', 'code_challenge is required (PKCE with S256)', 'pkce_missing');
    if (query.code_challenge_method !== 'S256') {
      // A missing method means plain (RFC 7636 section 4.3).
      const plain = query.code_challenge_method === undefined || query.code_challenge_method === 'plain';
      return fail('invalid_request', 'code_challenge_method must be S256', plain ? 'pkce_plain' : 'pkce_method_unsupported');
    }
    if (!S256_CHALLENGE.test(query.code_challenge)) return fail('invalid_request', 'code_challenge is not a valid S256 challenge', 'pkce_malformed');
    codeChallenge = query.code_challenge;
  }
  // OpenID Connect Core section 6: request objects are not supported, and saying so beats ignoring them.
  if (query.request !== undefined) return fail('request_not_supported', 'request objects are not supported', 'request_object');
  if (query.request_uri !== undefined) return fail('request_uri_not_supported', 'request_uri is not supported', 'request_object');
  const openId = parseOpenIdParameters(query);
  if (!openId.ok) return fail('invalid_request', openId.description, openId.reason);
  let scopes: string[];
  try {
    scopes = grantableScopes(parseScope(query.scope), client.scopes);
  } catch (error) {
    if (error instanceof OAuthError) return fail(error.code, error.description, 'scope');
    throw error;
  }
  if (scopes.length === 0) return fail('invalid_scope', 'no scope requested and the client has no default scope', 'scope');
  return { kind: 'valid', request: { client, redirectUri, scopes, state, codeChallenge, ...openId.requirements, idTokenHint: query.id_token_hint } };
}

/** Why prompt=none could not be answered without the user, as the client hears it. */
const PROMPT_NONE_FAILURES = {
  login_required: 'the user must sign in',
  consent_required: 'the user must consent',
  invalid_request: 'id_token_hint is not a valid id_token of this server',
} as const;

/** The prompt=none failure for the client at its redirect URI, with state and iss. */
export function promptNoneFailure(request: ValidAuthorizationRequest, error: keyof typeof PROMPT_NONE_FAILURES, issuer: string): string {
  return authorizationResponseUrl(
    request.redirectUri,
    { error, error_description: PROMPT_NONE_FAILURES[error], ...(request.state !== undefined ? { state: request.state } : {}) },
    issuer,
  );
}

/** Audits a refused authorization request of a known client (OAuthAuthorizeRejected); never a secret. */
export async function recordAuthorizeRejection(
  audit: AuditLog,
  rejection: AuthorizeRejection,
  userId: string | null,
  origin: AuditEntry['origin'],
): Promise<void> {
  await audit.record({
    action: 'OAuthAuthorizeRejected',
    outcome: 'failure',
    actor: userId ? { type: 'user', id: userId } : { type: 'user' },
    ...(userId ? { userId } : {}),
    clientId: rejection.clientId,
    origin,
    details: { reason: rejection.reason, ...(rejection.redirectUri !== undefined ? { redirect_uri: rejection.redirectUri } : {}) },
  });
}

/**
 * Keeps a validated request while the user signs in, so the login page's return URL stays short
 * however long the request's state is. The id is not a secret: it stands for a request anyone
 * could have sent, and resuming it checks the client again.
 */
export function storePendingRequest(db: CommonQueryMethods, request: ValidAuthorizationRequest): Promise<string> {
  return insertPendingAuthorizationRequest(db, {
    clientId: request.client.id,
    redirectUri: request.redirectUri,
    scopes: request.scopes,
    state: request.state ?? null,
    codeChallenge: request.codeChallenge,
    ...storedRequirements(request),
    expiresAt: new Date(Date.now() + AUTHORIZATION_REQUEST_TTL_SECONDS * 1000),
  });
}

function storedRequirements(request: SignInRequirements) {
  return { nonce: request.nonce, maxAge: request.maxAge, prompt: storedPrompt(request.prompt) };
}

export type ResumeOutcome = { kind: 'gone' } | { kind: 'sign_in_again' } | { kind: 'valid'; request: ValidAuthorizationRequest };

/**
 * Resumes a pending request for the user signed in with a sign-in at `authTime` (epoch ms). When the
 * request asked for a new sign-in (prompt=login, max_age) that has not happened since it was stored, it
 * stays pending: `sign_in_again`. Otherwise it is used up (once, before it expires) and checked against
 * the client as it is now: still live, still an authorization code client, the redirect URI and the
 * scopes still registered. `gone` when any of that fails.
 */
export async function resumePendingRequest(db: CommonQueryMethods, requestId: string, authTime: number, now: number): Promise<ResumeOutcome> {
  const gone = { kind: 'gone' } as const;
  if (!UUID.test(requestId)) return gone;
  const pending = await findPendingAuthorizationRequest(db, requestId);
  if (!pending) return gone;
  const requirements = { prompt: parseStoredPrompt(pending.prompt) as PromptValue[], maxAge: pending.maxAge };
  if (!signInServes(requirements, authTime, now, pending.createdAt)) return { kind: 'sign_in_again' };
  const row = await claimPendingAuthorizationRequest(db, requestId);
  if (!row) return gone;
  const client = await findClient(db, row.clientId);
  if (!client || client.revokedAt !== null || !client.grantTypes.includes('authorization_code')) return gone;
  if (!redirectUriMatches(client.redirectUris, row.redirectUri) || redirectUriProblem(row.redirectUri) !== undefined) return gone;
  if (!coversScopes(client.scopes, row.scopes)) return gone;
  return {
    kind: 'valid',
    request: {
      client,
      redirectUri: row.redirectUri,
      scopes: row.scopes,
      state: row.state ?? undefined,
      codeChallenge: row.codeChallenge,
      nonce: row.nonce,
      ...requirements,
    },
  };
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
  /** The token endpoint's clock (TokenIssuer.clock): a code expires on the clock that redeems it. */
  clock: () => Date;
}

/**
 * Issues a code at once, without a consent page, when no consent is needed: for a first-party client
 * (set by operators only: the grant is created or widened, audited consent 'first_party'), or when the
 * user's live grant to a confidential client already covers the scopes; else null, and always null for
 * prompt=consent. A public client is always asked about again (RFC 6749 section 10.2, RFC 8252 section
 * 8.6): anyone can send its client_id, redirect URI port and their own PKCE challenge.
 */
export async function authorizeWithoutConsent(
  context: AuthorizationContext,
  request: ValidAuthorizationRequest,
  signedIn: SignedIn,
  origin: AuditEntry['origin'],
): Promise<string | null> {
  if (request.client.clientType !== 'confidential' || request.prompt.includes('consent')) return null;
  if (request.client.firstParty) return issueCode(context, { ...request, clientId: request.client.id }, signedIn, origin, 'first_party');
  const grant = await findLiveGrantFor(context.db, signedIn.userId, request.client.id);
  if (!grant || !coversScopes(grant.scopes, request.scopes)) return null;
  return issueCode(context, { ...request, clientId: request.client.id }, signedIn, origin, 'existing_grant');
}

async function issueCode(
  context: AuthorizationContext,
  request: Pick<ValidAuthorizationRequest, 'redirectUri' | 'scopes' | 'state' | 'codeChallenge' | 'nonce'> & { clientId: string },
  signedIn: SignedIn,
  origin: AuditEntry['origin'],
  consent: 'existing_grant' | 'approved' | 'first_party',
  inTransaction?: (transaction: CommonQueryMethods) => Promise<boolean>,
): Promise<string | null> {
  const { userId, session } = signedIn;
  return context.db.transaction(async (transaction) => {
    if (inTransaction && !(await inTransaction(transaction))) return null;
    const { code } = await issueAuthorizationCode(
      transaction,
      {
        clientId: request.clientId,
        userId,
        redirectUri: request.redirectUri,
        scopes: request.scopes,
        codeChallenge: request.codeChallenge,
        nonce: request.nonce,
        sessionId: session.id,
        authTime: session.authTime.getTime(),
      },
      new Date(context.clock().getTime() + context.codeLifetimeSeconds * 1000),
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
    ...storedRequirements(request),
    csrfHash: hashBearerValue(csrfToken),
    expiresAt: new Date(Date.now() + AUTHORIZATION_REQUEST_TTL_SECONDS * 1000),
  });
  return { requestId, csrfToken };
}

export type DecisionOutcome =
  | { kind: 'forbidden'; message: string }
  | { kind: 'refused'; message: string }
  | { kind: 'redirect'; location: string };

/**
 * The consent decision. Only the user the request was shown to, with the CSRF token of that page,
 * may decide, once, before the request expires. Approve issues a code (and records the grant) for the
 * session the user is signed in with now; deny answers access_denied. Either way the client hears back
 * with state and iss.
 */
export async function decideAuthorizationRequest(
  context: AuthorizationContext,
  input: { requestId: string | undefined; csrfToken: string | undefined; decision: string | undefined },
  signedIn: SignedIn | null,
  origin: AuditEntry['origin'],
): Promise<DecisionOutcome> {
  const userId = signedIn?.userId ?? null;
  const forbidden = async (reason: string, clientId?: string): Promise<DecisionOutcome> => {
    await context.audit.record({
      action: 'OAuthConsentCsrfRejected',
      outcome: 'failure',
      actor: userId ? { type: 'user', id: userId } : { type: 'user' },
      ...(userId ? { userId } : {}),
      ...(clientId ? { clientId } : {}),
      origin,
      details: { reason },
    });
    return { kind: 'forbidden', message: 'This form was not sent from the consent page we showed you. Nothing was authorized.' };
  };
  if (!input.requestId || !UUID.test(input.requestId)) return forbidden('request_id_malformed');
  const request: AuthorizationRequestRow | null = await findAuthorizationRequest(context.db, input.requestId);
  if (!request) return forbidden('request_unknown');
  if (!signedIn || !userId) return forbidden('not_signed_in', request.clientId);
  if (request.userId !== userId || request.csrfHash === null) return forbidden('other_user', request.clientId);
  if (!input.csrfToken) return forbidden('csrf_token_missing', request.clientId);
  if (!matchesStoredHash(input.csrfToken, request.csrfHash)) return forbidden('csrf_token_wrong', request.clientId);
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
    { clientId: client.id, redirectUri: request.redirectUri, scopes: request.scopes, state, codeChallenge: request.codeChallenge, nonce: request.nonce },
    signedIn,
    origin,
    'approved',
    claim,
  );
  return location ? { kind: 'redirect', location } : refusedAgain;
}
