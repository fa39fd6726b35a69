import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFakeAmazon, type FakeAmazon } from '../../fakes/amazon';
import { generateServiceAccountKey, startFakeGoogleHome, type FakeGoogleHome } from '../../fakes/google-home';
import { ConfigError, loadConfig } from '../../platform/config';
import { ProviderError } from '../../platform/providers/provider-error';
import { createVoicePlatforms } from '../../platform/voice/registry';
import { VoicePlatformError, type HomeGraph, type LoginWithAmazon, type VoicePlatforms } from '../../platform/voice/voice-platform';
import { freePort } from '../helpers/ports';
import { voicePlatformEnvironment } from '../helpers/voice';

const LWA_CLIENT = { clientId: 'amzn1.application-oa2-client.voice-test', clientSecret: 'lwa-voice-test-secret' };
const SECOND = 1000;
const HOUR = 3600 * SECOND;

function failureOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

/** Our clients of the voice platforms' APIs (built by createVoicePlatforms from configuration) against the fakes, over real HTTP. */
describe('voice platform clients', () => {
  let amazon: FakeAmazon;
  let home: FakeGoogleHome;
  let now = Date.parse('2031-06-01T00:00:00Z');
  const serviceAccount = generateServiceAccountKey();
  let deadUrl: string;

  function environment(overrides: Record<string, string> = {}) {
    return {
      APP_ENV: 'test',
      ...voicePlatformEnvironment(amazon, LWA_CLIENT, home, serviceAccount.json),
      ...overrides,
    };
  }

  function platforms(overrides: Record<string, string> = {}): VoicePlatforms {
    return createVoicePlatforms(loadConfig(environment(overrides)), { now: () => now });
  }

  beforeAll(async () => {
    amazon = await startFakeAmazon({ ...LWA_CLIENT, clock: () => now });
    home = await startFakeGoogleHome({ serviceAccount: serviceAccount.account, clock: () => now });
    deadUrl = `http://127.0.0.1:${await freePort()}`;
  });

  afterAll(async () => {
    await amazon?.close();
    await home?.close();
  });

  describe('Login with Amazon', () => {
    let lwa: LoginWithAmazon;

    beforeEach(() => {
      lwa = platforms().loginWithAmazon!;
    });

    it('exchanges an AcceptGrant code and refreshes, keeping the refresh token LWA keeps', async () => {
      const { code } = amazon.issueGrantCode();
      const tokens = await lwa.exchangeCode(code);
      expect(tokens).toMatchObject({ accessToken: expect.stringMatching(/^Atza\|/), refreshToken: expect.stringMatching(/^Atzr\|/), expiresInSeconds: 3600 });
      const refreshed = await lwa.refresh(tokens.refreshToken!);
      expect(refreshed.refreshToken).toBe(tokens.refreshToken);
      expect(refreshed.accessToken).not.toBe(tokens.accessToken);
    });

    it('classifies refusals: a used code or revoked grant is invalid_grant, our wrong secret invalid_client', async () => {
      const { code, customerId } = amazon.issueGrantCode();
      const tokens = await lwa.exchangeCode(code);
      expect(await failureOf(lwa.exchangeCode(code))).toMatchObject({ kind: 'invalid_grant', details: { status: 400, providerCode: 'invalid_grant' } });
      amazon.revokeCustomer(customerId);
      expect(await failureOf(lwa.refresh(tokens.refreshToken!))).toMatchObject({ kind: 'invalid_grant' });
      const wrongSecret = platforms({ ALEXA_LWA_CLIENT_SECRET: 'not-the-secret' }).loginWithAmazon!;
      expect(await failureOf(wrongSecret.exchangeCode(amazon.issueGrantCode().code))).toMatchObject({ kind: 'invalid_client', details: { status: 401 } });
    });

    it('reports server errors, throttling and unreachable servers as transient, never as invalid_grant', async () => {
      const { code } = amazon.issueGrantCode();
      amazon.switches.failNext(1, 503, 'token');
      expect(await failureOf(lwa.exchangeCode(code))).toMatchObject({ kind: 'transient', details: { status: 503 } });
      amazon.switches.failNext(1, 429, 'token');
      expect(await failureOf(lwa.exchangeCode(code))).toMatchObject({ kind: 'transient', details: { status: 429 } });
      // The refusals did not use the code up.
      await expect(lwa.exchangeCode(code)).resolves.toMatchObject({ expiresInSeconds: 3600 });
      const unreachable = platforms({ ALEXA_LWA_TOKEN_URL: `${deadUrl}/auth/o2/token` }).loginWithAmazon!;
      const failure = await failureOf(unreachable.refresh('Atzr|anything'));
      expect(failure).toBeInstanceOf(ProviderError);
      expect(failure).toMatchObject({ kind: 'transient' });
    });

    it('stops at once when the caller cancels, with the cancellation as the reason', async () => {
      const controller = new AbortController();
      const reason = new Error('activity cancelled');
      controller.abort(reason);
      expect(await failureOf(lwa.exchangeCode(amazon.issueGrantCode().code, { signal: controller.signal }))).toBe(reason);
    });

    it('is absent without LWA credentials', () => {
      expect(platforms({ ALEXA_LWA_CLIENT_ID: '', ALEXA_LWA_CLIENT_SECRET: '' }).loginWithAmazon).toBeUndefined();
    });
  });

  describe('Alexa event gateway', () => {
    async function linkedCustomer(region: 'NA' | 'EU' | 'FE' = 'NA') {
      const { code, customerId } = amazon.issueGrantCode({ region });
      return { customerId, ...(await platforms().loginWithAmazon!.exchangeCode(code)) };
    }

    const event = () => ({ event: { header: { namespace: 'Alexa', name: 'ChangeReport', messageId: crypto.randomUUID(), payloadVersion: '3' }, payload: {} } });

    it("delivers events to the gateway of the customer's region", async () => {
      const customer = await linkedCustomer('FE');
      const sent = event();
      await platforms().alexaEventGateway.send('FE', customer.accessToken, sent);
      expect(amazon.events(customer.customerId)).toEqual([expect.objectContaining({ region: 'FE', event: sent })]);
    });

    it('maps each refusal to what the workflow must do', async () => {
      const gateway = platforms().alexaEventGateway;
      const customer = await linkedCustomer();
      const failure = (region: 'NA' | 'EU' | 'FE' = 'NA', token = customer.accessToken) => failureOf(gateway.send(region, token, event()));

      amazon.switches.retryAfterSeconds = 30;
      amazon.switches.failNext(1, 429, 'events');
      expect(await failure()).toMatchObject({ kind: 'transient', details: { status: 429, platformCode: 'THROTTLING_EXCEPTION', retryAfterSeconds: 30 } });
      amazon.switches.retryAfterSeconds = undefined;
      for (const status of [500, 503]) {
        amazon.switches.failNext(1, status, 'events');
        expect(await failure()).toMatchObject({ kind: 'transient', details: { status, platformCode: 'INTERNAL_SERVICE_EXCEPTION' } });
      }
      expect(await failureOf(gateway.send('NA', customer.accessToken, { event: {} }))).toMatchObject({ kind: 'protocol', details: { status: 400 } });
      // The wrong region's gateway answers 403 too: the permission is not gone, the device was told the wrong region.
      expect(await failure('EU')).toMatchObject({ kind: 'insufficient_permission', details: { status: 403, platformCode: 'INSUFFICIENT_PERMISSION_EXCEPTION' } });
      expect(await failure('NA', 'Atza|unknown')).toMatchObject({ kind: 'access_token_rejected', details: { status: 401, platformCode: 'INVALID_ACCESS_TOKEN_EXCEPTION' } });

      now += HOUR;
      expect(await failure()).toMatchObject({ kind: 'access_token_rejected' });
      const other = await linkedCustomer();
      amazon.disableSkill(other.customerId);
      expect(await failure('NA', other.accessToken)).toMatchObject({ kind: 'permission_revoked', details: { status: 403, platformCode: 'SKILL_DISABLED_EXCEPTION' } });

      const unreachable = platforms({ ALEXA_EVENT_GATEWAY_NA_URL: deadUrl }).alexaEventGateway;
      const fault = await failureOf(unreachable.send('NA', customer.accessToken, event()));
      expect(fault).toBeInstanceOf(VoicePlatformError);
      expect(fault).toMatchObject({ kind: 'transient' });
    });
  });

  describe('Home Graph', () => {
    let homeGraph: HomeGraph;

    beforeEach(() => {
      homeGraph = platforms().homeGraph!;
    });

    it('signs one assertion, reuses its token until shortly before expiry, and never has two exchanges in flight', async () => {
      const before = home.tokenExchanges();
      home.linkAgentUser('agent-cache');
      await Promise.all([homeGraph.requestSync('agent-cache'), homeGraph.requestSync('agent-cache'), homeGraph.reportStateAndNotification('agent-cache', 'r-1', {})]);
      await homeGraph.requestSync('agent-cache');
      expect(home.tokenExchanges() - before).toBe(1);
      now += 3300 * SECOND - 1;
      await homeGraph.requestSync('agent-cache');
      expect(home.tokenExchanges() - before).toBe(1);
      now += 2;
      await homeGraph.requestSync('agent-cache');
      expect(home.tokenExchanges() - before).toBe(2);
      expect(home.syncRequests('agent-cache')).toBe(5);
      expect(home.expiredTokenCalls()).toBe(0);
    });

    it('gets a new token once when Home Graph refuses the cached one', async () => {
      home.linkAgentUser('agent-401');
      await homeGraph.requestSync('agent-401');
      const before = home.tokenExchanges();
      home.revokeAccessTokens();
      await homeGraph.requestSync('agent-401');
      expect(home.tokenExchanges() - before).toBe(1);
      expect(home.syncRequests('agent-401')).toBe(2);
    });

    it('requests sync and reports state for linked agent users; the others are agent_user_not_found', async () => {
      home.linkAgentUser('agent-linked');
      await homeGraph.requestSync('agent-linked');
      const states = { 'property-1': { online: true, occupancy: 'OCCUPIED' } };
      await homeGraph.reportStateAndNotification('agent-linked', 'request-1', states);
      expect(home.reports('agent-linked')).toEqual([expect.objectContaining({ requestId: 'request-1', states })]);
      expect(await failureOf(homeGraph.requestSync('agent-stranger'))).toMatchObject({ kind: 'agent_user_not_found', details: { status: 404 } });
      expect(await failureOf(homeGraph.reportStateAndNotification('agent-stranger', 'request-2', states))).toMatchObject({ kind: 'agent_user_not_found', details: { status: 404 } });
    });

    it("deletes an agent user once; Home Graph's 404 afterwards says it is already gone", async () => {
      home.linkAgentUser('agent/with slash');
      expect(await homeGraph.deleteAgentUser('agent/with slash')).toBe('deleted');
      expect(await homeGraph.deleteAgentUser('agent/with slash')).toBe('not_found');
      expect(home.deletes('agent/with slash')).toBe(1);
      expect(await failureOf(homeGraph.reportStateAndNotification('agent/with slash', 'r', {}))).toMatchObject({ kind: 'agent_user_not_found' });
    });

    it('classifies refusals: our credentials are invalid_client, 429/5xx/unreachable are transient', async () => {
      home.linkAgentUser('agent-errors');
      home.switches.failNext(1, 503, 'requestSync');
      expect(await failureOf(homeGraph.requestSync('agent-errors'))).toMatchObject({ kind: 'transient', details: { status: 503, platformCode: 'UNAVAILABLE' } });
      home.switches.failNext(1, 429, 'deleteAgentUser');
      expect(await failureOf(homeGraph.deleteAgentUser('agent-errors'))).toMatchObject({ kind: 'transient', details: { status: 429 } });
      home.switches.permissionDenied = true;
      expect(await failureOf(homeGraph.reportStateAndNotification('agent-errors', 'r', {}))).toMatchObject({ kind: 'invalid_client', details: { status: 403 } });
      home.switches.permissionDenied = false;

      const otherKey = generateServiceAccountKey();
      expect(await failureOf(platforms({ GOOGLE_HOME_SERVICE_ACCOUNT_KEY: otherKey.json }).homeGraph!.requestSync('agent-errors'))).toMatchObject({ kind: 'invalid_client', details: { status: 400 } });
      home.switches.failNext(1, 500, 'token');
      expect(await failureOf(platforms().homeGraph!.requestSync('agent-errors'))).toMatchObject({ kind: 'transient', details: { status: 500 } });
      const unreachable = platforms({ GOOGLE_HOME_TOKEN_URL: `${deadUrl}/token` }).homeGraph!;
      expect(await failureOf(unreachable.requestSync('agent-errors'))).toMatchObject({ kind: 'transient' });
    });

    it('reads the key as JSON or base64 and stops start-up on a bad key without printing it', () => {
      expect(platforms({ GOOGLE_HOME_SERVICE_ACCOUNT_KEY: Buffer.from(serviceAccount.json).toString('base64') }).homeGraph).toBeDefined();
      expect(platforms({ GOOGLE_HOME_SERVICE_ACCOUNT_KEY: '' }).homeGraph).toBeUndefined();
      const keyFile = JSON.parse(serviceAccount.json) as Record<string, string>;
      const pkcs1 = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
      const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      const badKeys = [
        'not a key',
        JSON.stringify({ ...keyFile, client_email: undefined }),
        JSON.stringify({ ...keyFile, private_key: pkcs1 }),
        JSON.stringify({ ...keyFile, private_key: ecKey }),
        JSON.stringify({ ...keyFile, private_key: '-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n' }),
      ];
      for (const badKey of badKeys) {
        let thrown: unknown;
        try {
          platforms({ GOOGLE_HOME_SERVICE_ACCOUNT_KEY: badKey });
        } catch (error) {
          thrown = error;
        }
        expect(thrown, badKey.slice(0, 40)).toBeInstanceOf(ConfigError);
        const { message } = thrown as ConfigError;
        expect(message).toContain('GOOGLE_HOME_SERVICE_ACCOUNT_KEY');
        expect(message).not.toContain('PRIVATE KEY');
      }
    });
  });
});
