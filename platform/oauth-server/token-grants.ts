import { randomUUID } from 'node:crypto';
import type { DatabasePool } from 'slonik';
import type { AuditEntry, AuditLog } from '../audit';
import { findGrant, touchGrant } from '../../db/queries/oauth-grants';
import type { OAuthClientRow } from '../../db/queries/oauth-clients';
import {
  consumeAuthorizationCode,
  findRefreshTokenForUpdate,
  markRefreshTokenRotated,
  revokeTokenFamilyConcurrently,
} from '../../db/queries/oauth-tokens';
import { verifyPkce } from '../pkce';
import { hashBearerValue } from '../secrets';
import { OAuthError } from './errors';
import { grantableScopes, parseScope } from './scopes';
import type { TokenIssuer, TokenResponse } from './token-issuer';

export interface GrantContext {
  client: OAuthClientRow;
  origin: AuditEntry['origin'];
}

/**
 * The three grant types of the token endpoint. Each checks what RFC 6749, RFC 7636 and RFC 9700
 * ask of it and audits both the success and the attacks it detects (code replay, refresh reuse).
 */
export class TokenGrants {
  constructor(
    private readonly db: DatabasePool,
    private readonly issuer: TokenIssuer,
    private readonly audit: AuditLog,
  ) {}

  async authorizationCode(context: GrantContext, input: { code?: string; redirectUri?: string; codeVerifier?: string }): Promise<TokenResponse> {
    const { client } = context;
    this.requireGrantType(client, 'authorization_code');
    if (!input.code) throw new OAuthError('invalid_request', 'code is required');
    if (!input.redirectUri) throw new OAuthError('invalid_request', 'redirect_uri is required');
    if (!input.codeVerifier) throw new OAuthError('invalid_grant', 'code_verifier is required (PKCE)');

    type CodeOutcome = { tokens: TokenResponse } | { failure: OAuthError };
    const invalid = (description: string): CodeOutcome => ({ failure: new OAuthError('invalid_grant', description) });
    // One transaction from consumption to issuance: the code's row lock makes a concurrent redemption wait
    // until this one has committed its tokens, so a replay always sees (and revokes) them. Failures are
    // returned rather than thrown, so that a failed redemption still burns the code and its audit row commits.
    const outcome = await this.db.transaction(async (transaction): Promise<CodeOutcome> => {
      const code = await consumeAuthorizationCode(transaction, hashBearerValue(input.code!));
      if (!code) return invalid('authorization code is invalid or was already used');
      if (code.consumedAt !== null) {
        await revokeTokenFamilyConcurrently(transaction, code.familyId, 'authorization code replayed');
        await this.audit.record(this.entry(context, 'OAuthCodeReplay', 'failure', { userId: code.userId, details: { family: code.familyId } }), transaction);
        return invalid('authorization code is invalid or was already used');
      }
      if (code.clientId !== client.id) return invalid('authorization code was issued to another client');
      if (code.expiresAt <= Date.now()) return invalid('authorization code has expired');
      if (code.redirectUri !== input.redirectUri) return invalid('redirect_uri does not match the authorization request');
      if (!verifyPkce(input.codeVerifier!, code.codeChallenge)) {
        await this.audit.record(this.entry(context, 'OAuthCodeExchange', 'failure', { userId: code.userId, details: { reason: 'pkce_mismatch' } }), transaction);
        return invalid('code_verifier does not match the code_challenge');
      }
      const grant = await findGrant(transaction, code.grantId);
      if (!grant || grant.revokedAt !== null) return invalid('the grant behind this code was revoked');

      const tokens = await this.issuer.issue(
        transaction,
        { client, userId: code.userId, grantId: code.grantId, familyId: code.familyId, scopes: code.scopes },
        client.grantTypes.includes('refresh_token'),
      );
      await touchGrant(transaction, code.grantId);
      await this.audit.record(this.entry(context, 'OAuthCodeExchange', 'success', { userId: code.userId, details: { scopes: code.scopes } }), transaction);
      return { tokens };
    });
    if ('failure' in outcome) throw outcome.failure;
    return outcome.tokens;
  }

  async refreshToken(context: GrantContext, input: { refreshToken?: string; scope?: string }): Promise<TokenResponse> {
    const { client } = context;
    this.requireGrantType(client, 'refresh_token');
    if (!input.refreshToken) throw new OAuthError('invalid_request', 'refresh_token is required');
    const requestedScopes = parseScope(input.scope);

    type RefreshOutcome = { tokens: TokenResponse } | { failure: OAuthError };
    const invalid = (description: string): RefreshOutcome => ({ failure: new OAuthError('invalid_grant', description) });
    // Failures are returned rather than thrown, so that what was written before them (a family revocation) commits.
    const outcome = await this.db.transaction(async (transaction): Promise<RefreshOutcome> => {
      const token = await findRefreshTokenForUpdate(transaction, hashBearerValue(input.refreshToken!));
      if (!token || token.clientId !== client.id || token.revokedAt !== null) return invalid('refresh token is invalid or revoked');
      if (token.rotatedAt !== null) {
        // RFC 9700 section 4.14.2: a rotated token used again means it leaked; end the whole family.
        await revokeTokenFamilyConcurrently(transaction, token.familyId, 'refresh token reused after rotation');
        await this.audit.record(this.entry(context, 'OAuthRefreshTokenReuse', 'failure', { userId: token.userId, details: { family: token.familyId } }), transaction);
        return invalid('refresh token was already used');
      }
      if (token.expiresAt <= Date.now()) return invalid('refresh token has expired');
      const grant = await findGrant(transaction, token.grantId);
      if (!grant || grant.revokedAt !== null) return invalid('the grant behind this token was revoked');
      const scopes = requestedScopes.length > 0 ? requestedScopes : token.scopes;
      if (!scopes.every((scope) => token.scopes.includes(scope))) return { failure: new OAuthError('invalid_scope', 'a refresh cannot widen the scope') };

      await markRefreshTokenRotated(transaction, token.id);
      const tokens = await this.issuer.issue(transaction, { client, userId: token.userId, grantId: token.grantId, familyId: token.familyId, scopes }, true);
      await touchGrant(transaction, token.grantId);
      await this.audit.record(this.entry(context, 'OAuthTokenRefresh', 'success', { userId: token.userId, details: { scopes } }), transaction);
      return { tokens };
    });
    if ('failure' in outcome) throw outcome.failure;
    return outcome.tokens;
  }

  async clientCredentials(context: GrantContext, input: { scope?: string }): Promise<TokenResponse> {
    const { client } = context;
    if (client.clientType !== 'confidential') throw new OAuthError('unauthorized_client', 'client_credentials needs a confidential client');
    this.requireGrantType(client, 'client_credentials');
    const scopes = grantableScopes(parseScope(input.scope), client.scopes);
    return this.db.transaction(async (transaction) => {
      const tokens = await this.issuer.issue(transaction, { client, userId: null, grantId: null, familyId: null, scopes }, false);
      await this.audit.record(this.entry(context, 'OAuthClientCredentials', 'success', { details: { scopes } }), transaction);
      return tokens;
    });
  }

  private requireGrantType(client: OAuthClientRow, grantType: string): void {
    if (!client.grantTypes.includes(grantType)) throw new OAuthError('unauthorized_client', `this client may not use ${grantType}`);
  }

  private entry(
    context: GrantContext,
    action: AuditEntry['action'],
    outcome: AuditEntry['outcome'],
    extra: Pick<AuditEntry, 'userId' | 'details'>,
  ): AuditEntry {
    return { action, outcome, actor: { type: 'client', id: context.client.id }, clientId: context.client.id, origin: context.origin, ...extra };
  }
}

export function newTokenFamily(): string {
  return randomUUID();
}
