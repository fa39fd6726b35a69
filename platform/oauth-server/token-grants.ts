import type { CommonQueryMethods, DatabasePool } from 'slonik';
import { z } from 'zod';
import type { AuditEntry, AuditLog } from '../audit';
import type { IntegrationCrypto } from '../integration-crypto';
import { refreshTokenColumn } from '../../db/encrypted-columns';
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
  wipeSuccessorResponse,
  type RefreshTokenSuccessor,
  type RotatableRefreshTokenRow,
  type TokenAuthentication,
} from '../../db/queries/oauth-tokens';
import { ensureVoiceDevice, findVoiceDeviceByGrant, type VoiceDeviceRow } from '../../db/queries/voice-devices';
import { verifyPkce } from '../pkce';
import { hashBearerValue } from '../secrets';
import { OAuthError } from './errors';
import { endVoiceDeviceLinkNow } from './voice-device-unlink';
import { grantableScopes, parseScope } from './scopes';
import type { MintedTokens, TokenIssuer, TokenResponse } from './token-issuer';

export interface GrantContext {
  client: OAuthClientRow;
  origin: AuditEntry['origin'];
}

export interface TokenGrantSettings {
  /** How long a voice client's rotated refresh token still answers with its successor (VOICE_REFRESH_GRACE_SECONDS). */
  voiceRefreshGraceSeconds: number;
}

/** The tokens of an answer and, for a voice client of a platform, the device its grant links. */
export interface GrantedTokens {
  tokens: TokenResponse;
  voiceDevice: VoiceDeviceRow | undefined;
}

type Outcome = { granted: GrantedTokens } | { failure: OAuthError };

/**
 * A voice client's refresh token reused after rotation: the family is revoked, and with it the device
 * link ends (on our side, in the same transaction); the caller tells the device's workflow.
 */
export class VoiceLinkRevokedOnReuse extends OAuthError {
  constructor(
    description: string,
    readonly voiceDevice: VoiceDeviceRow,
  ) {
    super('invalid_grant', description);
  }
}

/** What a rotated voice refresh token repeats: its successor's answer, and when that access token expires (epoch seconds). */
const successorResponse = z.object({
  response: z.object({
    access_token: z.string(),
    token_type: z.literal('Bearer'),
    expires_in: z.number(),
    refresh_token: z.string().optional(),
    scope: z.string(),
  }),
  accessTokenExpiresAt: z.number(),
});

/**
 * What is wrong with the code_verifier of a code exchange, if anything. A code issued with a challenge
 * needs its verifier (RFC 7636); a code issued without one (a client that may omit PKCE, mayOmitPkce)
 * takes none: a verifier there means someone stripped the challenge from the authorization request
 * to inject a code (PKCE downgrade, RFC 9700 section 4.8.2).
 */
function pkceProblem(codeChallenge: string | null, codeVerifier: string | undefined): { reason: string; description: string } | undefined {
  if (codeChallenge === null) {
    return codeVerifier === undefined ? undefined : { reason: 'pkce_downgrade', description: 'code_verifier was sent for a code issued without a code_challenge' };
  }
  if (codeVerifier === undefined) return { reason: 'pkce_missing', description: 'code_verifier is required (PKCE)' };
  return verifyPkce(codeVerifier, codeChallenge) ? undefined : { reason: 'pkce_mismatch', description: 'code_verifier does not match the code_challenge' };
}

/**
 * A voice client's refresh for a disabled user. Alexa and Google drop the account link for good on
 * invalid_grant, so they are asked to come back later (503, per RFC 6749's temporarily_unavailable):
 * the link works again once an operator enables the user. Other clients get invalid_grant, and sign the
 * user in again when they are enabled.
 */
function userDisabledForNow(): OAuthError {
  return new OAuthError('temporarily_unavailable', "the user's account is disabled for now; try again later", 503);
}

/**
 * The three grant types of the token endpoint. Each checks what RFC 6749, RFC 7636 and RFC 9700
 * ask of it and audits both the success and the attacks it detects (code replay, a code or refresh
 * token presented by another client, refresh reuse, an expired code, a redirect_uri mismatch).
 *
 * Lock order (see lockGrant): the grant row first, then the code or refresh token. Grant and client
 * revocation take the same order, so no two of them deadlock.
 *
 * Voice clients (Alexa, Google) send parallel refreshes with one refresh token and retry answers
 * they lost, and unlink the user on any invalid_grant. So their refresh tokens rotate with a grace:
 * the rotated token answers again with the very same successor pair until the successor has been
 * used once or the grace has passed; only reuse after that is treated as a leak. Every time comes
 * from the issuer's clock.
 */
export class TokenGrants {
  constructor(
    private readonly db: DatabasePool,
    private readonly issuer: TokenIssuer,
    private readonly audit: AuditLog,
    private readonly crypto: IntegrationCrypto,
    private readonly settings: TokenGrantSettings,
  ) {}

  /** The first tokens of a grant; a voice client's first code exchange also links its device (audited VoiceDeviceLink). */
  async authorizationCode(context: GrantContext, input: { code?: string; redirectUri?: string; codeVerifier?: string }): Promise<GrantedTokens> {
    const { client } = context;
    this.requireGrantType(client, 'authorization_code');
    if (!input.code) throw new OAuthError('invalid_request', 'code is required');
    if (!input.redirectUri) throw new OAuthError('invalid_request', 'redirect_uri is required');
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
      const now = this.issuer.clock();
      const code = await consumeAuthorizationCode(transaction, codeHash, now);
      if (!code) return invalid('authorization code is invalid or was already used');
      const rejected = async (reason: string, description: string): Promise<Outcome> => {
        await this.audit.record(
          this.entry(context, 'OAuthCodeRejected', 'failure', { userId: code.userId, details: { reason, issuedTo: code.clientId } }),
          transaction,
        );
        return invalid(description);
      };
      if (code.consumedAt !== null) {
        await revokeTokenFamily(transaction, code, 'authorization code replayed', now);
        await this.audit.record(this.entry(context, 'OAuthCodeReplay', 'failure', { userId: code.userId, details: { family: code.familyId } }), transaction);
        return invalid('authorization code is invalid or was already used');
      }
      if (code.clientId !== client.id) return rejected('issued_to_another_client', 'authorization code was issued to another client');
      if (code.expiresAt <= now.getTime()) return rejected('expired', 'authorization code has expired');
      if (code.redirectUri !== input.redirectUri) return rejected('redirect_uri_mismatch', 'redirect_uri does not match the authorization request');
      // An empty parameter counts as omitted (RFC 6749 section 3.1).
      const pkceFailure = pkceProblem(code.codeChallenge, input.codeVerifier || undefined);
      if (pkceFailure) {
        await this.audit.record(this.entry(context, 'OAuthCodeExchange', 'failure', { userId: code.userId, details: { reason: pkceFailure.reason } }), transaction);
        return invalid(pkceFailure.description);
      }
      if (!grant?.live) return invalid('the grant behind this code was revoked');

      const authentication = { sessionId: code.sessionId, authTime: code.authTime };
      const tokens = await this.issuer.issue(
        transaction,
        { client, userId: code.userId, grantId: code.grantId, familyId: code.familyId, scopes: code.scopes, authentication },
        client.grantTypes.includes('refresh_token'),
      );
      const oidc = await this.withIdToken(transaction, client, code.scopes, tokens, { userId: code.userId, nonce: code.nonce, authentication });
      await touchGrant(transaction, code.grantId, now);
      await this.audit.record(
        this.entry(context, 'OAuthCodeExchange', 'success', { userId: code.userId, details: { scopes: code.scopes, ...oidc } }),
        transaction,
      );
      return { granted: { tokens, voiceDevice: await this.linkVoiceDevice(context, transaction, code) } };
    });
    if ('failure' in outcome) throw outcome.failure;
    return outcome.granted;
  }

  async refreshToken(context: GrantContext, input: { refreshToken?: string; scope?: string }): Promise<GrantedTokens> {
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
      const now = this.issuer.clock();
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
        const repeated = grant && !grant.revoked && client.kind === 'voice' ? this.repeatableSuccessor(token, now) : undefined;
        // A retry within the grace is no leak: while the user is disabled it waits like any refresh of theirs.
        if (repeated && grant?.userDisabled) return { failure: userDisabledForNow() };
        if (repeated) {
          await this.audit.record(
            this.entry(context, 'OAuthTokenRefresh', 'success', { userId: token.userId, details: { scopes: parseScope(repeated.scope), repeated: true } }),
            transaction,
          );
          return { granted: { tokens: repeated, voiceDevice: await this.voiceDeviceOf(client, transaction, token.grantId) } };
        }
        // RFC 9700 section 4.14.2: a rotated token used again means it leaked; end the whole family.
        await revokeTokenFamily(transaction, token, 'refresh token reused after rotation', now);
        await this.audit.record(this.entry(context, 'OAuthRefreshTokenReuse', 'failure', { userId: token.userId, details: { family: token.familyId } }), transaction);
        // The platform holds no live token of this link any more: the device is unlinked, not left to expire in a year.
        const device = await this.voiceDeviceOf(client, transaction, token.grantId);
        if (device?.status === 'linked') {
          await endVoiceDeviceLinkNow(transaction, this.audit, device, { direction: 'tokens_revoked', requestedBy: { type: 'platform' }, origin: context.origin }, now);
          return { failure: new VoiceLinkRevokedOnReuse('refresh token was already used', device) };
        }
        return invalid('refresh token was already used');
      }
      if (token.expiresAt <= now.getTime()) return invalid('refresh token has expired');
      if (grant && !grant.revoked && grant.userDisabled && client.kind === 'voice') return { failure: userDisabledForNow() };
      if (!grant?.live) return invalid('the grant behind this token was revoked');
      // RFC 6749 section 6: the access token may be narrowed; the new refresh token keeps the original scope.
      const scopes = requestedScopes.length > 0 ? requestedScopes : token.scopes;
      if (!scopes.every((scope) => token.scopes.includes(scope))) return { failure: new OAuthError('invalid_scope', 'a refresh cannot widen the scope') };

      const authentication = { sessionId: token.sessionId, authTime: token.authTime };
      const minted = await this.issuer.mint(
        transaction,
        { client, userId: token.userId, grantId: token.grantId, familyId: token.familyId, scopes, refreshTokenScopes: token.scopes, authentication },
        true,
      );
      const oidc = await this.withIdToken(transaction, client, scopes, minted.response, { userId: token.userId, nonce: null, authentication });
      // This token was its predecessor's successor: now that it has been used, the predecessor stops answering.
      await wipeSuccessorResponse(transaction, token.id);
      await markRefreshTokenRotated(transaction, token.id, now, client.kind === 'voice' ? this.successor(token.id, minted, now) : undefined);
      await touchGrant(transaction, token.grantId, now);
      await this.audit.record(this.entry(context, 'OAuthTokenRefresh', 'success', { userId: token.userId, details: { scopes, ...oidc } }), transaction);
      return { granted: { tokens: minted.response, voiceDevice: await this.voiceDeviceOf(client, transaction, token.grantId) } };
    });
    if ('failure' in outcome) throw outcome.failure;
    return outcome.granted;
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

  /**
   * Adds an OpenID Connect id_token to the answer when the scope has `openid`; the audit detail says so
   * (the id_token itself never reaches an audit row). A voice platform links devices, it signs no one in.
   */
  private async withIdToken(
    transaction: CommonQueryMethods,
    client: OAuthClientRow,
    scopes: readonly string[],
    response: TokenResponse,
    subject: { userId: string; nonce: string | null; authentication: TokenAuthentication },
  ): Promise<{ oidc: true; sid: string | null } | Record<string, never>> {
    if (!scopes.includes('openid') || client.kind === 'voice') return {};
    response.id_token = await this.issuer.idToken(transaction, { client, ...subject });
    return { oidc: true, sid: subject.authentication.sessionId };
  }

  /** The answer a rotated voice token repeats, sealed to the rotated token's row for the grace. */
  private successor(predecessorId: string, minted: MintedTokens, now: Date): RefreshTokenSuccessor {
    const sealed = JSON.stringify({ response: minted.response, accessTokenExpiresAt: minted.accessTokenExpiresAt });
    return {
      id: minted.refreshTokenId!,
      responseEnc: this.crypto.encrypt(sealed, refreshTokenColumn(predecessorId, 'successor_response_enc')),
      expiresAt: new Date(now.getTime() + this.settings.voiceRefreshGraceSeconds * 1000),
    };
  }

  /**
   * The successor pair a rotated token may still answer with: within the grace, before the successor
   * was used (its use wipes the envelope), while that access token lives; `expires_in` is what is left of it.
   */
  private repeatableSuccessor(token: RotatableRefreshTokenRow, now: Date): TokenResponse | undefined {
    if (token.successorResponseEnc === null || token.successorResponseExpiresAt === null || token.successorResponseExpiresAt <= now.getTime()) {
      return undefined;
    }
    const sealed = successorResponse.parse(
      JSON.parse(this.crypto.decrypt(token.successorResponseEnc, refreshTokenColumn(token.id, 'successor_response_enc'))),
    );
    const remainingSeconds = sealed.accessTokenExpiresAt - Math.floor(now.getTime() / 1000);
    return remainingSeconds > 0 ? { ...sealed.response, expires_in: remainingSeconds } : undefined;
  }

  /**
   * A voice grant's device link, created on the grant's first code exchange. The grant's row lock is
   * held, so no other issue of this grant creates the device meanwhile: only the one that did audits.
   */
  private async linkVoiceDevice(
    context: GrantContext,
    transaction: CommonQueryMethods,
    grant: { userId: string; grantId: string },
  ): Promise<VoiceDeviceRow | undefined> {
    const { client } = context;
    if (client.kind !== 'voice' || !client.voicePlatform) return undefined;
    const existing = await findVoiceDeviceByGrant(transaction, grant.grantId);
    if (existing) return existing;
    const device = await ensureVoiceDevice(transaction, { platform: client.voicePlatform, userId: grant.userId, clientId: client.id, grantId: grant.grantId });
    await this.audit.record(
      this.entry(context, 'VoiceDeviceLink', 'success', { userId: grant.userId, details: { platform: device.platform, deviceId: device.id } }),
      transaction,
    );
    return device;
  }

  private async voiceDeviceOf(client: OAuthClientRow, transaction: CommonQueryMethods, grantId: string): Promise<VoiceDeviceRow | undefined> {
    if (client.kind !== 'voice' || !client.voicePlatform) return undefined;
    return (await findVoiceDeviceByGrant(transaction, grantId)) ?? undefined;
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
