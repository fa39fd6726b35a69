import type { DatabasePool } from 'slonik';
import type { AuditEntry, AuditLog } from '../audit';
import { touchGrant } from '../../db/queries/oauth-grants';
import type { OAuthClientRow } from '../../db/queries/oauth-clients';
import {
  consumeAuthorizationCode,
  findAuthorizationCodeGrant,
  findRefreshTokenForUpdate,
  findRefreshTokenStatus,
  lockGrant,
  markRefreshTokenRotated,
  revokeTokenFamily,
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

type Outcome = { tokens: TokenResponse } | { failure: OAuthError };

/**
 * The three grant types of the token endpoint. Each checks what RFC 6749, RFC 7636 and RFC 9700
 * ask of it and audits both the success and the attacks it detects (code replay, a code or refresh
 * token presented by another client, refresh reuse, an expired code, a redirect_uri mismatch).
 *
 * Lock order (see lockGrant): the grant row first, then the code or refresh token. Grant and client
 * revocation take the same order, so no two of them deadlock.
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
    const codeHash = hashBearerValue(input.code);

    const invalid = (description: string): Outcome => ({ failure: new OAuthError('invalid_grant', description) });
    // One transaction from consumption to issuance: the grant's and the code's row locks make a concurrent
    // redemption wait until this one has committed its tokens, so a replay always sees (and revokes) them.
    // Failures are returned rather than thrown, so that a failed redemption still burns the code and its
    // audit row commits.
    const outcome = await this.db.transaction(async (transaction): Promise<Outcome> => {
      const grantId = await findAuthorizationCodeGrant(transaction, codeHash);
      if (!grantId) return invalid('authorization code is invalid or was already used');
      const grant = await lockGrant(transaction, grantId);
      const code = await consumeAuthorizationCode(transaction, codeHash);
      if (!code) return invalid('authorization code is invalid or was already used');
      const rejected = async (reason: string, description: string): Promise<Outcome> => {
        await this.audit.record(
          this.entry(context, 'OAuthCodeRejected', 'failure', { userId: code.userId, details: { reason, issuedTo: code.clientId } }),
          transaction,
        );
        return invalid(description);
      };
      if (code.consumedAt !== null) {
        await revokeTokenFamily(transaction, code, 'authorization code replayed');
        await this.audit.record(this.entry(context, 'OAuthCodeReplay', 'failure', { userId: code.userId, details: { family: code.familyId } }), transaction);
        return invalid('authorization code is invalid or was already used');
      }
      if (code.clientId !== client.id) return rejected('issued_to_another_client', 'authorization code was issued to another client');
      if (code.expiresAt <= Date.now()) return rejected('expired', 'authorization code has expired');
      if (code.redirectUri !== input.redirectUri) return rejected('redirect_uri_mismatch', 'redirect_uri does not match the authorization request');
      if (!verifyPkce(input.codeVerifier!, code.codeChallenge)) {
        await this.audit.record(this.entry(context, 'OAuthCodeExchange', 'failure', { userId: code.userId, details: { reason: 'pkce_mismatch' } }), transaction);
        return invalid('code_verifier does not match the code_challenge');
      }
      if (!grant?.live) return invalid('the grant behind this code was revoked');

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
    const tokenHash = hashBearerValue(input.refreshToken);

    const invalid = (description: string): Outcome => ({ failure: new OAuthError('invalid_grant', description) });
    // Failures are returned rather than thrown, so that what was written before them (a family revocation) commits.
    const outcome = await this.db.transaction(async (transaction): Promise<Outcome> => {
      const unlocked = await findRefreshTokenStatus(transaction, tokenHash);
      if (!unlocked) return invalid('refresh token is invalid or revoked');
      const grant = await lockGrant(transaction, unlocked.grantId);
      const token = await findRefreshTokenForUpdate(transaction, tokenHash);
      if (!token) return invalid('refresh token is invalid or revoked');
      if (token.clientId !== client.id) {
        await this.audit.record(
          this.entry(context, 'OAuthRefreshTokenRejected', 'failure', { userId: token.userId, details: { reason: 'issued_to_another_client', issuedTo: token.clientId } }),
          transaction,
        );
        return invalid('refresh token is invalid or revoked');
      }
      if (token.revokedAt !== null) return invalid('refresh token is invalid or revoked');
      if (token.rotatedAt !== null) {
        // RFC 9700 section 4.14.2: a rotated token used again means it leaked; end the whole family.
        await revokeTokenFamily(transaction, token, 'refresh token reused after rotation');
        await this.audit.record(this.entry(context, 'OAuthRefreshTokenReuse', 'failure', { userId: token.userId, details: { family: token.familyId } }), transaction);
        return invalid('refresh token was already used');
      }
      if (token.expiresAt <= Date.now()) return invalid('refresh token has expired');
      if (!grant?.live) return invalid('the grant behind this token was revoked');
      // RFC 6749 section 6: the access token may be narrowed; the new refresh token keeps the original scope.
      const scopes = requestedScopes.length > 0 ? requestedScopes : token.scopes;
      if (!scopes.every((scope) => token.scopes.includes(scope))) return { failure: new OAuthError('invalid_scope', 'a refresh cannot widen the scope') };

      await markRefreshTokenRotated(transaction, token.id);
      const tokens = await this.issuer.issue(
        transaction,
        { client, userId: token.userId, grantId: token.grantId, familyId: token.familyId, scopes, refreshTokenScopes: token.scopes },
        true,
      );
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
