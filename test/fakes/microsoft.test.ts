import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Fastify from 'fastify';
import { startFakeMicrosoft, type FakeMicrosoft } from '../../fakes/microsoft';
import { loadConfig } from '../../platform/config';
import { createPkcePair } from '../../platform/pkce';
import { MicrosoftCalendarAdapter } from '../../platform/providers/microsoft-calendar';
import { MicrosoftGraphClient } from '../../platform/providers/microsoft-graph';
import { ProviderError } from '../../platform/providers/provider-error';
import { MICROSOFT_TEST_CLIENT, microsoftEnvironment } from '../helpers/microsoft';

const REDIRECT_URI = 'http://127.0.0.1:9/api/v1/integrations/microsoft-calendar/callback';
const DAY = 24 * 3600 * 1000;

/** The Microsoft adapter against the fake identity platform over HTTP: authorization, rotation, AADSTS classification. */
describe('Microsoft identity platform adapter', () => {
  let microsoft: FakeMicrosoft;
  let adapter: MicrosoftCalendarAdapter;
  let now = Date.now();

  beforeAll(async () => {
    microsoft = await startFakeMicrosoft({ ...MICROSOFT_TEST_CLIENT, clock: () => now, rotationGraceSeconds: 3600 });
    const config = loadConfig({ APP_ENV: 'test', ...microsoftEnvironment(microsoft), MICROSOFT_CALENDAR_SCOPES: 'openid offline_access Calendars.Read' });
    adapter = new MicrosoftCalendarAdapter(config.microsoft, config.microsoft.credentials!);
  });

  afterAll(() => microsoft?.close());

  /** Our side of Graph's validation handshake, so the fake agrees to create subscriptions. */
  async function startHandshakeReceiver() {
    const receiver = Fastify({ logger: false });
    receiver.addContentTypeParser('text/plain', { parseAs: 'string' }, (_request, body, done) => done(null, body));
    receiver.post('/*', async (request, reply) => reply.type('text/plain').send((request.query as { validationToken?: string }).validationToken ?? ''));
    return { url: await receiver.listen({ host: '127.0.0.1', port: 0 }), close: () => receiver.close() };
  }

  async function authorize() {
    const pkce = createPkcePair();
    const url = new URL(adapter.authorizationUrl({ state: 'state-value', codeChallenge: pkce.challenge, redirectUri: REDIRECT_URI }));
    const consent = await fetch(url, { redirect: 'manual' });
    const callback = new URL(consent.headers.get('location')!);
    return { url, code: callback.searchParams.get('code')!, state: callback.searchParams.get('state'), verifier: pkce.verifier };
  }

  async function refused(work: Promise<unknown>): Promise<ProviderError> {
    const error = await work.then(() => undefined, (caught: unknown) => caught);
    expect(error).toBeInstanceOf(ProviderError);
    return error as ProviderError;
  }

  it('asks for a code with PKCE, offline access and query response mode, and reads the account from the ID token', async () => {
    const { url, code, state, verifier } = await authorize();
    expect(Object.fromEntries(url.searchParams)).toMatchObject({
      client_id: MICROSOFT_TEST_CLIENT.clientId,
      response_type: 'code',
      response_mode: 'query',
      code_challenge_method: 'S256',
      scope: 'openid offline_access Calendars.Read',
      redirect_uri: REDIRECT_URI,
    });
    expect(state).toBe('state-value');
    const tokens = await adapter.exchangeCode({ code, codeVerifier: verifier, redirectUri: REDIRECT_URI });
    expect(tokens.refreshToken).toBe(microsoft.newestRefreshToken(microsoft.latestAccount()!));
    expect(tokens.accountId).toBe(microsoft.latestAccount());
    expect(tokens.scopes).toEqual(['openid', 'Calendars.Read', 'offline_access']);

    const reused = await refused(adapter.exchangeCode({ code, codeVerifier: verifier, redirectUri: REDIRECT_URI }));
    expect(reused).toMatchObject({ kind: 'invalid_grant', details: { providerCode: 'AADSTS54005' } });
  });

  it('gets a new refresh token on every refresh; the old one dies after the grace', async () => {
    const { code, verifier } = await authorize();
    const first = await adapter.exchangeCode({ code, codeVerifier: verifier, redirectUri: REDIRECT_URI });
    const second = await adapter.refresh(first.refreshToken);
    expect(second.refreshToken).toBeDefined();
    expect(second.refreshToken).not.toBe(first.refreshToken);
    const third = await adapter.refresh(second.refreshToken!);
    expect(third.refreshToken).not.toBe(second.refreshToken);
    expect(microsoft.newestRefreshToken(microsoft.latestAccount()!)).toBe(third.refreshToken);

    now += 2 * 3600 * 1000;
    expect(await refused(adapter.refresh(first.refreshToken))).toMatchObject({ kind: 'invalid_grant', details: { providerCode: 'AADSTS70000' } });
    const fourth = await adapter.refresh(third.refreshToken!);
    now += 91 * DAY;
    const inactive = await refused(adapter.refresh(fourth.refreshToken!));
    expect(inactive).toMatchObject({ kind: 'invalid_grant', details: { providerCode: 'AADSTS700082' } });
    expect(inactive.message).toMatch(/^Microsoft answered 400 invalid_grant: AADSTS700082: The refresh token has expired due to inactivity/);
    expect(inactive.message).not.toMatch(/Trace ID/);
  });

  it('classifies AADSTS codes: revoked and expired grants, rejected client secrets, outages', async () => {
    const { code, verifier } = await authorize();
    const { refreshToken } = await adapter.exchangeCode({ code, codeVerifier: verifier, redirectUri: REDIRECT_URI });
    for (const aadsts of [70008, 50173] as const) {
      microsoft.switches.invalidGrant = aadsts;
      expect(await refused(adapter.refresh(refreshToken))).toMatchObject({ kind: 'invalid_grant', details: { status: 400, providerCode: `AADSTS${aadsts}` } });
    }
    microsoft.switches.invalidGrant = false;

    microsoft.switches.clientSecretExpired = true;
    expect(await refused(adapter.refresh(refreshToken))).toMatchObject({ kind: 'invalid_client', details: { status: 401, providerCode: 'AADSTS7000222' } });
    microsoft.switches.clientSecretExpired = false;
    const config = loadConfig({ APP_ENV: 'test', ...microsoftEnvironment(microsoft, { MICROSOFT_CLIENT_SECRET: 'not-the-secret' }) });
    const misconfigured = new MicrosoftCalendarAdapter(config.microsoft, config.microsoft.credentials!);
    expect(await refused(misconfigured.refresh(refreshToken))).toMatchObject({ kind: 'invalid_client', details: { providerCode: 'AADSTS7000215' } });

    microsoft.switches.failNext(1, 503);
    expect(await refused(adapter.refresh(refreshToken))).toMatchObject({ kind: 'transient', details: { status: 503 } });
    microsoft.switches.failNext(1, 429);
    expect(await refused(adapter.refresh(refreshToken))).toMatchObject({ kind: 'transient', details: { status: 429 } });
    expect((await adapter.refresh(refreshToken)).accessToken).toBeTruthy();
  });

  it('has no per-grant revocation and calls nothing to revoke', async () => {
    const before = microsoft.calls.length;
    expect(adapter.supportsRevocation).toBe(false);
    expect(await adapter.revoke()).toBe('not_supported');
    expect(microsoft.calls.length).toBe(before);
  });

  it("lists the app's subscriptions with the row each names, also one whose creation answer was lost; a refused token deletes nothing and says so", async () => {
    const receiver = await startHandshakeReceiver();
    try {
      const { code, verifier } = await authorize();
      const { accessToken } = await adapter.exchangeCode({ code, codeVerifier: verifier, redirectUri: REDIRECT_URI });
      const oid = microsoft.latestAccount()!;
      const graph = new MicrosoftGraphClient(microsoft.graphUrl, receiver.url, 15_000);
      const expiresAt = new Date(now + DAY);

      microsoft.switches.loseCreateAnswers(1);
      expect(await refused(graph.createSubscription(accessToken, { rowReference: 'row-lost', clientState: 'state-1', expiresAt }))).toMatchObject({ kind: 'transient', details: { status: 504 } });
      const [lost] = microsoft.liveSubscriptions(oid);
      expect(lost).toBeDefined();
      const kept = await graph.createSubscription(accessToken, { rowReference: 'row-kept', clientState: 'state-2', expiresAt });
      expect(await graph.listSubscriptions(accessToken)).toEqual([
        { id: lost!.id, expiresAt, rowReference: 'row-lost' },
        { id: kept.id, expiresAt, rowReference: 'row-kept' },
      ]);

      microsoft.revokeGrants(oid);
      expect(await graph.deleteSubscription(accessToken, kept.id)).toBe('refused');
      expect(microsoft.liveSubscriptions(oid)).toHaveLength(2);
    } finally {
      await receiver.close();
    }
  });
});
