import { ApplicationFailure } from '@temporalio/activity';
import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { voiceDeviceColumn } from '../db/encrypted-columns';
import {
  discardAlexaGrantCode,
  readVoiceDeviceSecrets,
  recordVoiceDeviceError,
  stageExchangedLwaTokens,
  storeLwaTokensIfVersion,
  type VoiceDeviceSecretsRow,
} from '../db/queries/voice-devices';
import { ProviderError } from '../platform/providers/provider-error';
import type { ProviderTokens } from '../platform/providers/oauth-tokens';
import { accessTokenExpiry, type ActivityDependencies, type TokenState } from './dependencies';
import { FailureType } from './failure-types';
import { deviceAuditEntry, linkedVoiceDevice, platformCallOptions, recordedVoiceFailure, requireLoginWithAmazon } from './voice-device-support';

/** What an AcceptGrant came to; a refusal names its reason (ids and words only, never the code). */
export type AlexaGrantExchange = ({ accepted: true } & TokenState) | { accepted: false; reason: 'no_grant_code' | 'invalid_grant' | 'lwa_not_configured' | 'lwa_client_rejected' };

/** A compare-and-set that keeps losing means something is badly wrong; a few rounds are plenty for real races. */
const STORE_ATTEMPTS = 3;

/**
 * Login with Amazon tokens of Alexa devices: the AcceptGrant code exchanged at once, and hourly
 * refreshes. Only the device's workflow calls these (one writer per credential); every write is
 * compare-and-set on lwa_token_version, so a refresh that lost a race adopts what the winner stored.
 */
export function createVoiceCredentialActivities(dependencies: ActivityDependencies) {
  const { db, crypto, voice, audit, clock } = dependencies;

  return {
    /**
     * Exchanges the AcceptGrant code waiting on the device row (it lives minutes). Once Amazon answers,
     * the answer takes the code's place on the row (encrypted) until the tokens are stored, so a retry
     * after a failed store stores it rather than spending the code again; a refusal drops the code, a
     * transient failure before the answer leaves it for the next attempt. A retry whose earlier
     * attempt stored the tokens reports them.
     */
    async exchangeAlexaGrant(input: { deviceId: string; knownVersion: number }): Promise<AlexaGrantExchange> {
      const device = await linkedVoiceDevice(db, input.deviceId);
      const secrets = (await readVoiceDeviceSecrets(db, input.deviceId))!;
      let exchanged: { tokens: LwaTokens; sealed: string };
      if (secrets.lwaGrantCodeEnc) {
        const outcome = await exchangeCode(secrets.lwaGrantCodeEnc);
        if ('accepted' in outcome) return outcome;
        exchanged = outcome;
      } else if (secrets.lwaExchangedTokensEnc) {
        // An earlier attempt spent the code and could not store what it got: store that now.
        const plaintext = crypto.decrypt(secrets.lwaExchangedTokensEnc, voiceDeviceColumn(input.deviceId, 'lwa_exchanged_tokens_enc'));
        exchanged = { tokens: lwaTokens.parse(JSON.parse(plaintext)), sealed: secrets.lwaExchangedTokensEnc };
      } else {
        if (secrets.lwaTokenVersion > input.knownVersion && secrets.lwaAccessTokenExpiresAt !== null) {
          return { accepted: true, tokenVersion: secrets.lwaTokenVersion, accessTokenExpiresAt: secrets.lwaAccessTokenExpiresAt };
        }
        return refuse('no_grant_code', 'no AcceptGrant code is waiting for this device');
      }

      // The code is spent at Amazon: these tokens replace whatever the device held, whoever wrote last.
      for (let attempt = 1; attempt <= STORE_ATTEMPTS; attempt++) {
        const stored = await db.transaction(async (transaction) => {
          const current = await readVoiceDeviceSecrets(transaction, input.deviceId);
          if (current?.status !== 'linked') throw ApplicationFailure.nonRetryable(`voice device is ${current?.status ?? 'gone'}`, FailureType.deviceUnlinked);
          const state = await writeLwaTokens(dependencies, transaction, { deviceId: input.deviceId, expectedVersion: current.lwaTokenVersion, consumedEnc: exchanged.sealed }, exchanged.tokens);
          if (!state) return null;
          await audit.record(
            { action: 'VoiceAcceptGrant', outcome: 'success', actor: { type: 'system' }, ...deviceAuditEntry(device), details: { deviceId: device.id, lwaTokenVersion: state.tokenVersion } },
            transaction,
          );
          return state;
        });
        if (stored) return { accepted: true, ...stored };
      }
      throw ApplicationFailure.retryable('the device kept changing while the AcceptGrant tokens were stored', FailureType.providerUnavailable);

      /** Exchanges the code, and keeps the answer on the row in its place before anything else can fail. */
      async function exchangeCode(sealedCode: string): Promise<AlexaGrantExchange | { tokens: LwaTokens; sealed: string }> {
        if (!voice.loginWithAmazon) return refuse('lwa_not_configured', 'Login with Amazon is not configured (ALEXA_LWA_CLIENT_ID, ALEXA_LWA_CLIENT_SECRET)');
        const code = crypto.decrypt(sealedCode, voiceDeviceColumn(input.deviceId, 'lwa_grant_code_enc'));
        const requestedAt = clock();
        let answer: ProviderTokens;
        try {
          answer = await voice.loginWithAmazon.exchangeCode(code, platformCallOptions());
        } catch (error) {
          if (error instanceof ProviderError && error.kind === 'invalid_grant') return refuse('invalid_grant', error.message);
          if (error instanceof ProviderError && (error.kind === 'invalid_client' || error.kind === 'protocol')) return refuse('lwa_client_rejected', error.message);
          throw await recordedVoiceFailure(db, input.deviceId, error);
        }
        if (!answer.refreshToken) return refuse('lwa_client_rejected', 'Login with Amazon answered without a refresh token');
        const tokens = lwaTokensOf({ ...answer, refreshToken: answer.refreshToken }, requestedAt);
        const sealed = crypto.encrypt(JSON.stringify(tokens), voiceDeviceColumn(input.deviceId, 'lwa_exchanged_tokens_enc'));
        await stageExchangedLwaTokens(db, input.deviceId, sealedCode, sealed);
        return { tokens, sealed };
      }

      async function refuse(reason: Extract<AlexaGrantExchange, { accepted: false }>['reason'], message: string): Promise<AlexaGrantExchange> {
        await db.transaction(async (transaction) => {
          if (secrets.lwaGrantCodeEnc) await discardAlexaGrantCode(transaction, input.deviceId, secrets.lwaGrantCodeEnc);
          await recordVoiceDeviceError(transaction, input.deviceId, { kind: reason, message });
          await audit.record(
            { action: 'VoiceAcceptGrant', outcome: 'failure', actor: { type: 'system' }, ...deviceAuditEntry(device), details: { deviceId: device.id, reason } },
            transaction,
          );
        });
        return { accepted: false, reason };
      }
    },

    /** An AcceptGrant that ran out of time: its code is worthless minutes later, so it goes. */
    async discardAlexaGrantCode(input: { deviceId: string }): Promise<void> {
      await discardAlexaGrantCode(db, input.deviceId);
    },

    /**
     * Refreshes the device's LWA tokens unless they moved on past `expectedVersion` (then it reports
     * what is stored). An LWA invalid_grant means the user withdrew the permission: GrantRevoked.
     */
    async refreshAlexaTokens(input: { deviceId: string; expectedVersion: number }): Promise<TokenState> {
      return refreshLwaTokens(dependencies, input.deviceId, input.expectedVersion);
    },
  };
}

/**
 * One LWA refresh, compare-and-set on `expectedVersion`; shared by the hourly refresh and the event
 * gateway's forced refresh after a 401. LWA refresh tokens do not rotate as a rule: when none comes
 * back, the one we hold stays.
 */
export async function refreshLwaTokens(dependencies: ActivityDependencies, deviceId: string, expectedVersion: number): Promise<TokenState> {
  const { db, crypto, voice, audit, clock } = dependencies;
  const device = await linkedVoiceDevice(db, deviceId);
  const secrets = (await readVoiceDeviceSecrets(db, deviceId))!;
  if (secrets.lwaTokenVersion !== expectedVersion) return storedLwaState(secrets);
  if (!secrets.lwaRefreshTokenEnc) throw ApplicationFailure.nonRetryable('the device holds no Login with Amazon tokens', FailureType.grantRevoked);
  const loginWithAmazon = requireLoginWithAmazon(voice);
  let refreshToken: string;
  try {
    refreshToken = crypto.decrypt(secrets.lwaRefreshTokenEnc, voiceDeviceColumn(deviceId, 'lwa_refresh_token_enc'));
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    await recordVoiceDeviceError(db, deviceId, { kind: 'credential_unreadable', message });
    throw ApplicationFailure.nonRetryable(message, FailureType.credentialUnreadable);
  }

  const requestedAt = clock();
  let tokens: ProviderTokens;
  try {
    tokens = await loginWithAmazon.refresh(refreshToken, platformCallOptions());
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'invalid_grant') {
      // A re-grant ends the old grant at Amazon: if an AcceptGrant stored its tokens meanwhile, those stand.
      const current = await readVoiceDeviceSecrets(db, deviceId);
      if (current?.lwaTokenVersion !== expectedVersion) return storedLwaState(current);
    }
    throw await recordedVoiceFailure(db, deviceId, error);
  }
  const newRefreshToken = tokens.refreshToken ?? refreshToken;
  return db.transaction(async (transaction) => {
    const stored = await writeLwaTokens(dependencies, transaction, { deviceId, expectedVersion, consumedEnc: null }, lwaTokensOf({ ...tokens, refreshToken: newRefreshToken }, requestedAt));
    // Someone else wrote first (an AcceptGrant, a forced refresh) or the device was unlinked: theirs stands.
    if (!stored) return storedLwaState(await readVoiceDeviceSecrets(transaction, deviceId));
    await audit.record(
      {
        action: 'OAuthTokenRefresh',
        outcome: 'success',
        actor: { type: 'system' },
        ...deviceAuditEntry(device),
        details: { deviceId, tokenService: 'login-with-amazon', lwaTokenVersion: stored.tokenVersion, rotated: newRefreshToken !== refreshToken },
      },
      transaction,
    );
    return stored;
  });
}

/** LWA tokens as the device row keeps them; also what a spent AcceptGrant code's answer is staged as (encrypted). */
const lwaTokens = z.object({ accessToken: z.string(), refreshToken: z.string(), accessTokenExpiresAt: z.number(), obtainedAt: z.number() });
type LwaTokens = z.infer<typeof lwaTokens>;

function lwaTokensOf(tokens: ProviderTokens & { refreshToken: string }, requestedAt: Date): LwaTokens {
  return { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, accessTokenExpiresAt: accessTokenExpiry(tokens, requestedAt).getTime(), obtainedAt: requestedAt.getTime() };
}

/** Encrypts and stores LWA tokens, compare-and-set on the version; null when another writer came first. */
async function writeLwaTokens(
  { crypto }: Pick<ActivityDependencies, 'crypto'>,
  transaction: CommonQueryMethods,
  write: { deviceId: string; expectedVersion: number; consumedEnc: string | null },
  tokens: LwaTokens,
): Promise<TokenState | null> {
  const version = await storeLwaTokensIfVersion(
    transaction,
    write.deviceId,
    write.expectedVersion,
    {
      accessTokenEnc: crypto.encrypt(tokens.accessToken, voiceDeviceColumn(write.deviceId, 'lwa_access_token_enc')),
      refreshTokenEnc: crypto.encrypt(tokens.refreshToken, voiceDeviceColumn(write.deviceId, 'lwa_refresh_token_enc')),
      accessTokenExpiresAt: new Date(tokens.accessTokenExpiresAt),
      refreshedAt: new Date(tokens.obtainedAt),
    },
    write.consumedEnc,
  );
  return version === null ? null : { tokenVersion: version, accessTokenExpiresAt: tokens.accessTokenExpiresAt };
}

function storedLwaState(secrets: VoiceDeviceSecretsRow | null): TokenState {
  if (secrets?.status !== 'linked') throw ApplicationFailure.nonRetryable(`voice device is ${secrets?.status ?? 'gone'}`, FailureType.deviceUnlinked);
  if (secrets.lwaAccessTokenExpiresAt === null) throw ApplicationFailure.nonRetryable('the device holds no Login with Amazon tokens', FailureType.grantRevoked);
  return { tokenVersion: secrets.lwaTokenVersion, accessTokenExpiresAt: secrets.lwaAccessTokenExpiresAt };
}
