import { afterEach, describe, expect, it } from 'vitest';
import { startFakeAmazon, type FakeAlexaRegion, type FakeAmazon } from '../../fakes/amazon';

const CLIENT = { clientId: 'amzn1.application-oa2-client.test', clientSecret: 'lwa-test-client-secret' };
const HOUR = 3600 * 1000;

/** The fake Login with Amazon and event gateways, over HTTP, as shared/protocols.md "Amazon Alexa" describes the real ones. */
describe('fake Amazon', () => {
  let amazon: FakeAmazon;
  let now = Date.parse('2031-01-01T00:00:00Z');

  afterEach(async () => {
    await amazon?.close();
  });

  async function start(options: Partial<Parameters<typeof startFakeAmazon>[0]> = {}) {
    now = Date.parse('2031-01-01T00:00:00Z');
    amazon = await startFakeAmazon({ ...CLIENT, clock: () => now, ...options });
  }

  async function token(fields: Record<string, string>, client = CLIENT) {
    const response = await fetch(amazon.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ...fields, client_id: client.clientId, client_secret: client.clientSecret }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  async function send(region: FakeAlexaRegion, accessToken: string | undefined, event: object = changeReport()) {
    const response = await fetch(`${amazon.gatewayUrls[region]}/v3/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(accessToken ? { authorization: `Bearer ${accessToken}` } : {}) },
      body: JSON.stringify(event),
    });
    const text = await response.text();
    return { status: response.status, retryAfter: response.headers.get('retry-after'), code: text ? (JSON.parse(text) as { payload: { code: string } }).payload.code : undefined };
  }

  function changeReport() {
    return { event: { header: { namespace: 'Alexa', name: 'ChangeReport', messageId: crypto.randomUUID(), payloadVersion: '3' }, endpoint: { endpointId: 'property-1' }, payload: {} } };
  }

  async function linkedCustomer(region: FakeAlexaRegion = 'NA') {
    const { code, customerId } = amazon.issueGrantCode({ region });
    const { body } = await token({ grant_type: 'authorization_code', code });
    return { customerId, accessToken: body.access_token as string, refreshToken: body.refresh_token as string };
  }

  it('exchanges an AcceptGrant code once, within its lifetime, for hourly access tokens and a refresh token', async () => {
    await start({ codeLifetimeSeconds: 300 });
    const { code } = amazon.issueGrantCode();
    const first = await token({ grant_type: 'authorization_code', code });
    expect(first).toMatchObject({ status: 200, body: { token_type: 'bearer', expires_in: 3600, access_token: expect.stringMatching(/^Atza\|/), refresh_token: expect.stringMatching(/^Atzr\|/) } });
    expect(await token({ grant_type: 'authorization_code', code })).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });

    const late = amazon.issueGrantCode();
    now += 301 * 1000;
    expect(await token({ grant_type: 'authorization_code', code: late.code })).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    expect(await token({ grant_type: 'authorization_code', code: 'made-up' })).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    expect(amazon.codeExchanges()).toBe(1);
  });

  it('refuses a wrong client and unknown grant types', async () => {
    await start();
    const { code } = amazon.issueGrantCode();
    expect(await token({ grant_type: 'authorization_code', code }, { ...CLIENT, clientSecret: 'wrong' })).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    expect(await token({ grant_type: 'password' })).toMatchObject({ status: 400, body: { error: 'unsupported_grant_type' } });
    // The refused attempt did not use the code up.
    expect(await token({ grant_type: 'authorization_code', code })).toMatchObject({ status: 200 });
  });

  it('keeps the refresh token on refresh unless rotation is on, and refuses revoked grants', async () => {
    await start();
    const { refreshToken, accessToken } = await linkedCustomer();
    const kept = await token({ grant_type: 'refresh_token', refresh_token: refreshToken });
    expect(kept.body).toMatchObject({ refresh_token: refreshToken, expires_in: 3600 });
    expect(kept.body.access_token).not.toBe(accessToken);

    amazon.switches.rotateRefreshTokens = true;
    const rotated = await token({ grant_type: 'refresh_token', refresh_token: refreshToken });
    expect(rotated.body.refresh_token).not.toBe(refreshToken);
    expect(await token({ grant_type: 'refresh_token', refresh_token: refreshToken })).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    expect(amazon.refreshes()).toBe(2);

    amazon.revokeAll();
    expect(await token({ grant_type: 'refresh_token', refresh_token: rotated.body.refresh_token as string })).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    expect(await send('NA', rotated.body.access_token as string)).toMatchObject({ status: 401, code: 'INVALID_ACCESS_TOKEN_EXCEPTION' });
  });

  it('accepts events with a live token of the region and records them; expired or unknown tokens get 401', async () => {
    await start();
    const customer = await linkedCustomer('EU');
    expect(await send('EU', customer.accessToken)).toMatchObject({ status: 202, code: undefined });
    expect(amazon.events(customer.customerId)).toHaveLength(1);
    expect(amazon.events()[0]).toMatchObject({ region: 'EU', event: { event: { header: { name: 'ChangeReport' } } } });

    expect(await send('NA', customer.accessToken)).toMatchObject({ status: 403, code: 'INSUFFICIENT_PERMISSION_EXCEPTION' });
    expect(await send('EU', undefined)).toMatchObject({ status: 401, code: 'INVALID_ACCESS_TOKEN_EXCEPTION' });
    expect(await send('EU', customer.accessToken, { event: {} })).toMatchObject({ status: 400, code: 'INVALID_REQUEST_EXCEPTION' });
    expect(amazon.expiredTokenCalls()).toBe(0);

    now += HOUR;
    expect(await send('EU', customer.accessToken)).toMatchObject({ status: 401, code: 'INVALID_ACCESS_TOKEN_EXCEPTION' });
    expect(amazon.expiredTokenCalls()).toBe(1);
    expect(amazon.events()).toHaveLength(1);
  });

  it('answers 403 SKILL_DISABLED_EXCEPTION once the customer disabled the skill, whose grant is then revoked', async () => {
    await start();
    const disabling = await linkedCustomer();
    const other = await linkedCustomer();
    amazon.disableSkill(disabling.customerId);
    expect(await send('NA', disabling.accessToken)).toMatchObject({ status: 403, code: 'SKILL_DISABLED_EXCEPTION' });
    expect(await token({ grant_type: 'refresh_token', refresh_token: disabling.refreshToken })).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    expect(await send('NA', other.accessToken)).toMatchObject({ status: 202 });
    expect(amazon.liveRefreshTokens()).toEqual([other.refreshToken]);
  });

  it('fails the next requests as scripted: throttling with Retry-After, server errors', async () => {
    await start();
    const customer = await linkedCustomer();
    amazon.switches.retryAfterSeconds = 7;
    amazon.switches.failNext(1, 429, 'events');
    expect(await send('NA', customer.accessToken)).toMatchObject({ status: 429, code: 'THROTTLING_EXCEPTION', retryAfter: '7' });
    amazon.switches.failNext(1, 503, 'events');
    expect(await send('NA', customer.accessToken)).toMatchObject({ status: 503, code: 'INTERNAL_SERVICE_EXCEPTION' });
    amazon.switches.failNext(1, 500, 'token');
    expect(await token({ grant_type: 'refresh_token', refresh_token: customer.refreshToken })).toMatchObject({ status: 500, body: { error: 'server_error' } });
    expect(await send('NA', customer.accessToken)).toMatchObject({ status: 202 });
    expect(() => amazon.switches.failNext(1, 404)).toThrow(RangeError);
  });

  it('mints AcceptGrant codes for the sandbox over HTTP', async () => {
    await start();
    const response = await fetch(`${amazon.url}/sandbox/grant-codes`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'region=fe' });
    const { code, customerId } = (await response.json()) as { code: string; customerId: string };
    expect(response.status).toBe(201);
    expect(amazon.customer(customerId)).toMatchObject({ region: 'FE' });
    expect(await token({ grant_type: 'authorization_code', code })).toMatchObject({ status: 200 });
  });
});
