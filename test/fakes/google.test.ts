import { createHash, randomBytes } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { loadConfig } from '../../platform/config';
import { GoogleCalendarAdapter } from '../../platform/providers/google-calendar';
import { ProviderError } from '../../platform/providers/provider-error';
import { eventually } from '../helpers/eventually';

const CLIENT_ID = 'test-client.apps.googleusercontent.com';
const CLIENT_SECRET = 'GOCSPX-test-secret';
const REDIRECT_URI = 'http://127.0.0.1:9/oauth/google/callback';
const SCOPE = 'https://www.googleapis.com/auth/calendar.readonly';

let now = Date.parse('2030-01-01T00:00:00Z');
let google: FakeGoogle;

beforeAll(async () => {
  google = await startFakeGoogle({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, clock: () => now });
});
afterAll(() => google.close());
beforeEach(() => google.reset());

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorize(params: Record<string, string>): Promise<Response> {
  return fetch(`${google.authorizeUrl}?${new URLSearchParams(params)}`, { redirect: 'manual' });
}

async function getCode(challenge: string, offline = true): Promise<string> {
  const response = await authorize({
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    response_type: 'code',
    scope: SCOPE,
    state: 'state-123',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...(offline ? { access_type: 'offline', prompt: 'consent' } : {}),
  });
  expect(response.status).toBe(302);
  const code = new URL(response.headers.get('location') ?? '').searchParams.get('code');
  expect(code).toMatch(/^4\//);
  return code as string;
}

interface TokenResponse {
  status: number;
  body: Record<string, unknown>;
}

async function post(url: string, form: Record<string, string>): Promise<TokenResponse> {
  const response = await fetch(url, { method: 'POST', body: new URLSearchParams(form) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function exchange(code: string, verifier: string, secret = CLIENT_SECRET): Promise<TokenResponse> {
  return post(google.tokenUrl, {
    grant_type: 'authorization_code',
    code,
    code_verifier: verifier,
    redirect_uri: REDIRECT_URI,
    client_id: CLIENT_ID,
    client_secret: secret,
  });
}

function refresh(refreshToken: string): Promise<TokenResponse> {
  return post(google.tokenUrl, {
    grant_type: 'refresh_token',
    refresh_token: refreshToken,
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
  });
}

async function connect(): Promise<{ accessToken: string; refreshToken: string }> {
  const { verifier, challenge } = pkce();
  const { status, body } = await exchange(await getCode(challenge), verifier);
  expect(status).toBe(200);
  return { accessToken: body.access_token as string, refreshToken: body.refresh_token as string };
}

function calendarList(accessToken: string): Promise<Response> {
  return fetch(`${google.calendarApiUrl}/users/me/calendarList`, { headers: { authorization: `Bearer ${accessToken}` } });
}

describe('fake Google', () => {
  it('listens on 127.0.0.1 only', () => {
    expect(new URL(google.url).hostname).toBe('127.0.0.1');
  });

  it('runs the full authorization code flow with PKCE S256', async () => {
    const { verifier, challenge } = pkce();
    const response = await authorize({
      client_id: CLIENT_ID,
      redirect_uri: REDIRECT_URI,
      response_type: 'code',
      scope: SCOPE,
      state: 'opaque state/+=',
      code_challenge: challenge,
      code_challenge_method: 'S256',
      access_type: 'offline',
      prompt: 'consent',
    });
    expect(response.status).toBe(302);
    const location = new URL(response.headers.get('location') ?? '');
    expect(location.origin + location.pathname).toBe(REDIRECT_URI);
    expect(location.searchParams.get('state')).toBe('opaque state/+=');
    expect(location.searchParams.get('scope')).toBe(SCOPE);

    const { status, body } = await exchange(location.searchParams.get('code') ?? '', verifier);
    expect(status).toBe(200);
    expect(body).toMatchObject({ expires_in: 3599, scope: SCOPE, token_type: 'Bearer' });
    expect(body.access_token).toMatch(/^ya29\./);
    expect(body.refresh_token).toMatch(/^1\/\//);
    expect(google.liveRefreshTokens()).toContain(body.refresh_token);
    expect(google.issuedSecrets()).toEqual(expect.arrayContaining([body.access_token, body.refresh_token, CLIENT_SECRET]));

    const list = await calendarList(body.access_token as string);
    expect(list.status).toBe(200);
    expect(await list.json()).toEqual({ kind: 'calendar#calendarList', items: [{ id: 'primary', summary: 'Primary' }] });
    expect(google.calls.map((c) => [c.endpoint, c.status])).toEqual([
      ['authorize', 302],
      ['token', 200],
      ['calendarList', 200],
    ]);
  });

  it('issues no refresh token without access_type=offline', async () => {
    const { verifier, challenge } = pkce();
    const { status, body } = await exchange(await getCode(challenge, false), verifier);
    expect(status).toBe(200);
    expect(body.refresh_token).toBeUndefined();
  });

  it('answers invalid_grant for a wrong code verifier', async () => {
    const { challenge } = pkce();
    const { status, body } = await exchange(await getCode(challenge), pkce().verifier);
    expect(status).toBe(400);
    expect(body).toEqual({ error: 'invalid_grant', error_description: 'Bad Request' });
  });

  it('answers invalid_grant when a code is reused', async () => {
    const { verifier, challenge } = pkce();
    const code = await getCode(challenge);
    expect((await exchange(code, verifier)).status).toBe(200);
    const again = await exchange(code, verifier);
    expect(again.status).toBe(400);
    expect(again.body.error).toBe('invalid_grant');
  });

  it('refreshes without a new refresh token by default', async () => {
    const { refreshToken } = await connect();
    const { status, body } = await refresh(refreshToken);
    expect(status).toBe(200);
    expect(body).toMatchObject({ expires_in: 3599, scope: SCOPE, token_type: 'Bearer' });
    expect(body.refresh_token).toBeUndefined();
    expect((await refresh(refreshToken)).status).toBe(200);
    expect(google.calls.at(-1)?.grantType).toBe('refresh_token');
  });

  it('rotates refresh tokens when asked and rejects the old one', async () => {
    const { refreshToken } = await connect();
    google.switches.rotateRefreshTokens = true;
    const { status, body } = await refresh(refreshToken);
    expect(status).toBe(200);
    expect(body.refresh_token).toMatch(/^1\/\//);
    expect(body.refresh_token).not.toBe(refreshToken);
    expect(google.liveRefreshTokens()).not.toContain(refreshToken);

    const old = await refresh(refreshToken);
    expect(old.status).toBe(400);
    expect(old.body).toEqual({ error: 'invalid_grant', error_description: 'Token has been expired or revoked.' });
    expect((await refresh(body.refresh_token as string)).status).toBe(200);
  });

  it('answers invalid_grant for every refresh while the invalidGrant switch is on', async () => {
    const { refreshToken } = await connect();
    google.switches.invalidGrant = true;
    const { status, body } = await refresh(refreshToken);
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_grant');
    expect(google.calls.at(-1)).toMatchObject({ endpoint: 'token', status: 400, error: 'invalid_grant' });
    google.reset();
    expect((await refresh(refreshToken)).status).toBe(200);
  });

  it('fails the next calls as told, then succeeds', async () => {
    const { refreshToken } = await connect();
    google.switches.failNext(2, 503);
    const first = await refresh(refreshToken);
    const second = await refresh(refreshToken);
    const third = await refresh(refreshToken);
    expect([first.status, second.status, third.status]).toEqual([503, 503, 200]);
    expect(first.body).toEqual({ error: 'backend_error' });

    google.switches.failNext(1, 429);
    const limited = await refresh(refreshToken);
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual({ error: 'rate_limit_exceeded' });
    expect(() => google.switches.failNext(1, 400)).toThrow(RangeError);
  });

  it('delays token answers by delayMs', async () => {
    const { refreshToken } = await connect();
    google.switches.delayMs = 150;
    const started = performance.now();
    expect((await refresh(refreshToken)).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
  });

  it("the adapter gives up on an unanswered token request after PROVIDER_REQUEST_TIMEOUT_MS, and a caller's cancellation still wins", async () => {
    const { refreshToken } = await connect();
    const config = loadConfig({
      APP_ENV: 'test',
      GOOGLE_CLIENT_ID: CLIENT_ID,
      GOOGLE_CLIENT_SECRET: CLIENT_SECRET,
      GOOGLE_TOKEN_URL: google.tokenUrl,
      PROVIDER_REQUEST_TIMEOUT_MS: '1000',
    });
    const adapter = new GoogleCalendarAdapter(config.google, config.google.credentials!);
    let release = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    let held = 0;
    google.switches.holdAnswer = () => {
      held += 1;
      return released;
    };
    const deadlines = vi.spyOn(AbortSignal, 'timeout');
    try {
      const timedOut = await adapter.refresh(refreshToken).then(() => undefined, (error: unknown) => error);
      expect(deadlines).toHaveBeenCalledWith(1000);
      expect(timedOut).toBeInstanceOf(ProviderError);
      expect(timedOut).toMatchObject({ kind: 'transient', message: expect.stringContaining('TimeoutError') });

      const cancellation = new AbortController();
      const cancelled = adapter.refresh(refreshToken, { signal: cancellation.signal });
      await eventually(() => held === 2);
      const reason = new Error('activity cancelled');
      cancellation.abort(reason);
      await expect(cancelled).rejects.toBe(reason);
    } finally {
      deadlines.mockRestore();
      release();
    }
  });

  it('revoking a refresh token kills the access tokens issued from it', async () => {
    const { accessToken, refreshToken } = await connect();
    const revoked = await post(google.revokeUrl, { token: refreshToken });
    expect(revoked).toEqual({ status: 200, body: {} });
    expect(google.isRevoked(refreshToken)).toBe(true);
    expect(google.isRevoked(accessToken)).toBe(true);

    const list = await calendarList(accessToken);
    expect(list.status).toBe(401);
    expect(await list.json()).toMatchObject({ error: { code: 401, message: 'Request had invalid authentication credentials.' } });
    expect(google.calls.at(-1)).toMatchObject({ endpoint: 'calendarList', status: 401, accessTokenExpired: false });
    expect((await refresh(refreshToken)).body.error).toBe('invalid_grant');
  });

  it('revoking an access token revokes its refresh token too', async () => {
    const { accessToken, refreshToken } = await connect();
    expect((await post(google.revokeUrl, { token: accessToken })).status).toBe(200);
    expect(google.liveRefreshTokens()).not.toContain(refreshToken);
    expect((await refresh(refreshToken)).status).toBe(400);
  });

  it('answers 400 invalid_token when revoking an unknown or already revoked token', async () => {
    const unknown = await post(google.revokeUrl, { token: 'ya29.never-issued' });
    expect(unknown).toEqual({ status: 400, body: { error: 'invalid_token', error_description: 'Token expired or revoked' } });

    const { refreshToken } = await connect();
    expect((await post(google.revokeUrl, { token: refreshToken })).status).toBe(200);
    expect((await post(google.revokeUrl, { token: refreshToken })).status).toBe(400);
  });

  it('rejects an access token that expired by the fake clock', async () => {
    const { accessToken } = await connect();
    expect((await calendarList(accessToken)).status).toBe(200);
    now += 3599 * 1000;
    expect((await calendarList(accessToken)).status).toBe(401);
    expect(google.calls.filter((c) => c.endpoint === 'calendarList')).toEqual([
      expect.objectContaining({ status: 200, accessTokenExpired: false }),
      expect.objectContaining({ status: 401, accessTokenExpired: true, at: now }),
    ]);
  });

  it('rejects a bad client secret with 401 invalid_client', async () => {
    const { verifier, challenge } = pkce();
    const { status, body } = await exchange(await getCode(challenge), verifier, 'wrong-secret');
    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
  });

  it('accepts client credentials by HTTP Basic', async () => {
    const { refreshToken } = await connect();
    const basic = Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64');
    const response = await fetch(google.tokenUrl, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}` },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }),
    });
    expect(response.status).toBe(200);
  });

  it('rejects other grant types and missing parameters', async () => {
    const creds = { client_id: CLIENT_ID, client_secret: CLIENT_SECRET };
    expect((await post(google.tokenUrl, { ...creds, grant_type: 'password' })).body.error).toBe('unsupported_grant_type');
    expect((await post(google.tokenUrl, { ...creds, grant_type: 'refresh_token' })).body.error).toBe('invalid_request');
  });

  it('refuses a plain code challenge with an error page, never a redirect', async () => {
    const response = await authorize({
      client_id: CLIENT_ID,
      redirect_uri: REDIRECT_URI,
      response_type: 'code',
      scope: SCOPE,
      code_challenge: 'plain-challenge-plain-challenge-plain-challenge',
      code_challenge_method: 'plain',
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(google.calls.at(-1)).toMatchObject({ endpoint: 'authorize', status: 400 });
  });

  it('refuses an unknown client_id at authorize', async () => {
    const response = await authorize({ client_id: 'someone-else', redirect_uri: REDIRECT_URI, response_type: 'code', scope: SCOPE });
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
  });

  it('revokeAllGrants kills every token', async () => {
    const { accessToken, refreshToken } = await connect();
    google.revokeAllGrants();
    expect(google.liveRefreshTokens()).toEqual([]);
    expect((await refresh(refreshToken)).body.error).toBe('invalid_grant');
    expect((await calendarList(accessToken)).status).toBe(401);
  });
});

describe('fake Google Calendar API, push channels and RISC', () => {
  const received: Array<{ path: string; headers: Record<string, string | string[] | undefined>; body: string }> = [];
  let receiver: FastifyInstance;
  let receiverUrl: string;

  beforeAll(async () => {
    receiver = Fastify();
    receiver.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => done(null, body));
    receiver.post('/*', async (request, reply) => {
      received.push({ path: request.url, headers: request.headers, body: typeof request.body === 'string' ? request.body : '' });
      return reply.code(202).send();
    });
    receiverUrl = await receiver.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(() => receiver.close());
  beforeEach(() => {
    received.length = 0;
  });

  async function connectAs(account: string, scope = SCOPE): Promise<Record<string, unknown>> {
    google.signInAs(account);
    try {
      const { verifier, challenge } = pkce();
      const response = await authorize({
        client_id: CLIENT_ID,
        redirect_uri: REDIRECT_URI,
        response_type: 'code',
        scope,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        access_type: 'offline',
      });
      const code = new URL(response.headers.get('location')!).searchParams.get('code')!;
      const { status, body } = await exchange(code, verifier);
      expect(status).toBe(200);
      return body;
    } finally {
      google.signInAs(undefined);
    }
  }

  async function listEvents(accessToken: string, query: Record<string, string> = {}) {
    const response = await fetch(`${google.calendarApiUrl}/calendars/primary/events?${new URLSearchParams(query)}`, { headers: { authorization: `Bearer ${accessToken}` } });
    return { status: response.status, body: (await response.json()) as { items: Array<Record<string, unknown>>; nextPageToken?: string; nextSyncToken?: string; error?: { errors: Array<{ reason: string }> } } };
  }

  function calendarPost(accessToken: string, path: string, body: object) {
    return fetch(`${google.calendarApiUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  }

  it('issues an id_token signed with its published key when openid is granted, naming the account', async () => {
    const body = await connectAs('111111111111111111111', `openid ${SCOPE}`);
    const keys = createLocalJWKSet((await (await fetch(google.riscJwksUrl)).json()) as JSONWebKeySet);
    const { payload } = await jwtVerify(body.id_token as string, keys, { issuer: 'https://accounts.google.com', audience: CLIENT_ID });
    expect(payload.sub).toBe('111111111111111111111');
    expect((await connectAs('111111111111111111111')).id_token).toBeUndefined();
  });

  it('lists events in pages, then only the changes since the sync token, deletions as cancelled', async () => {
    const { access_token: accessToken } = await connectAs('222222222222222222222');
    const calendar = google.calendar('222222222222222222222');
    const ids = [1, 2, 3].map((day) => calendar.add({ summary: `stay ${day}`, start: `2030-02-0${day}`, end: `2030-02-0${day + 1}` }));
    google.switches.calendar.eventsPageSize = 2;

    const first = await listEvents(accessToken as string);
    expect(first.status).toBe(200);
    expect(first.body.items.map((item) => item.id)).toEqual(ids.slice(0, 2));
    expect(first.body.items[0]).toMatchObject({ status: 'confirmed', summary: 'stay 1', start: { date: '2030-02-01' }, end: { date: '2030-02-02' } });
    expect(first.body.nextSyncToken).toBeUndefined();
    const second = await listEvents(accessToken as string, { pageToken: first.body.nextPageToken! });
    expect(second.body.items.map((item) => item.id)).toEqual([ids[2]]);
    const syncToken = second.body.nextSyncToken!;
    expect(syncToken).toBeDefined();

    calendar.change(ids[0]!, { start: '2030-03-01T10:00:00Z', end: '2030-03-01T12:00:00Z' });
    calendar.remove(ids[1]!);
    const changes = await listEvents(accessToken as string, { syncToken, showDeleted: 'true' });
    expect(changes.body.items).toEqual([
      expect.objectContaining({ id: ids[0], start: { dateTime: '2030-03-01T10:00:00.000Z' } }),
      { kind: 'calendar#event', etag: expect.any(String), id: ids[1], status: 'cancelled' },
    ]);
    expect((await listEvents(accessToken as string, { syncToken: changes.body.nextSyncToken! })).body.items).toEqual([]);

    google.switches.calendar.expireSyncTokens();
    const gone = await listEvents(accessToken as string, { syncToken: changes.body.nextSyncToken! });
    expect(gone.status).toBe(410);
    expect(gone.body.error?.errors[0]?.reason).toBe('fullSyncRequired');
    expect(google.calls.at(-1)).toMatchObject({ endpoint: 'eventsList', status: 410 });
  });

  it('keeps calendars apart, refuses bad tokens and fails as told', async () => {
    const { access_token: accessToken } = await connectAs('333333333333333333333');
    google.calendar('444444444444444444444').add({ start: '2030-02-01', end: '2030-02-02' });
    expect((await listEvents(accessToken as string)).body.items).toEqual([]);
    expect((await listEvents('ya29.never-issued')).status).toBe(401);
    google.switches.calendar.failNextApiCalls(1, 503);
    expect((await listEvents(accessToken as string)).status).toBe(503);
    expect((await listEvents(accessToken as string)).status).toBe(200);
  });

  it('opens push channels that notify with Google\'s headers, sync first, until stopped or expired', async () => {
    const { access_token: accessToken } = await connectAs('555555555555555555555');
    const address = `${receiverUrl}/hook`;
    const watch = await calendarPost(accessToken as string, '/calendars/primary/events/watch', { id: 'channel-1', type: 'web_hook', address, token: 'channel-secret', params: { ttl: '3600' } });
    expect(watch.status).toBe(200);
    const channel = (await watch.json()) as Record<string, string>;
    expect(channel).toMatchObject({ kind: 'api#channel', id: 'channel-1', token: 'channel-secret', expiration: String(now + 3600 * 1000) });
    expect(google.liveChannels().map((live) => live.id)).toContain('channel-1');
    expect(google.issuedSecrets()).toContain('channel-secret');
    const duplicate = await calendarPost(accessToken as string, '/calendars/primary/events/watch', { id: 'channel-1', type: 'web_hook', address });
    expect(duplicate.status).toBe(400);

    const deliveries = await google.notify('channel-1');
    expect(deliveries.map((delivery) => [delivery.state, delivery.messageNumber, delivery.status])).toEqual([['sync', 1, 202], ['exists', 2, 202]]);
    expect(received.map((request) => request.headers)).toEqual([
      expect.objectContaining({ 'x-goog-channel-id': 'channel-1', 'x-goog-channel-token': 'channel-secret', 'x-goog-resource-id': channel.resourceId, 'x-goog-resource-state': 'sync', 'x-goog-message-number': '1' }),
      expect.objectContaining({ 'x-goog-resource-state': 'exists', 'x-goog-message-number': '2' }),
    ]);
    expect((await google.redeliver('channel-1', 2)).messageNumber).toBe(2);
    expect(received.at(-1)?.headers['x-goog-message-number']).toBe('2');

    const stop = (id: string, resourceId: string) => calendarPost(accessToken as string, '/channels/stop', { id, resourceId });
    expect((await stop('channel-1', 'another-resource')).status).toBe(404);
    expect((await stop('channel-1', channel.resourceId!)).status).toBe(204);
    expect(google.liveChannels().map((live) => live.id)).not.toContain('channel-1');
    await expect(google.notify('channel-1')).rejects.toThrow(/not live/);

    await calendarPost(accessToken as string, '/calendars/primary/events/watch', { id: 'channel-2', type: 'web_hook', address, params: { ttl: '60' } });
    now += 60 * 1000;
    expect(google.liveChannels().map((live) => live.id)).not.toContain('channel-2');
    await calendarPost(accessToken as string, '/calendars/primary/events/watch', { id: 'channel-3', type: 'web_hook', address });
    google.expireChannel('channel-3');
    expect(google.liveChannels().map((live) => live.id)).not.toContain('channel-3');
  });

  it('describes events oddly and pages without end when told', async () => {
    const { access_token: accessToken } = await connectAs('777777777777777777777');
    const calendar = google.calendar('777777777777777777777');
    const noStart = calendar.add({ start: '2030-04-01', end: '2030-04-02', wire: { start: undefined } });
    const badEnd = calendar.add({ start: '2030-04-01', end: '2030-04-02', wire: { end: { dateTime: 'soon' } } });
    const { items } = (await listEvents(accessToken as string)).body;
    expect(items.find((item) => item.id === noStart)).not.toHaveProperty('start');
    expect(items.find((item) => item.id === badEnd)).toMatchObject({ start: { date: '2030-04-01' }, end: { dateTime: 'soon' } });

    google.switches.calendar.endlessPages = true;
    try {
      let page = await listEvents(accessToken as string);
      for (let pages = 1; pages < 5; pages++) page = await listEvents(accessToken as string, { pageToken: page.body.nextPageToken! });
      expect(page.body).toMatchObject({ items: [], nextPageToken: expect.any(String) });
      expect(page.body.nextSyncToken).toBeUndefined();
    } finally {
      google.switches.calendar.endlessPages = false;
    }
  });

  it('opens the channel but loses the events.watch answer when told, so only the resource id of another channel can stop it', async () => {
    const { access_token: accessToken } = await connectAs('888888888888888888888');
    const watch = (id: string) => calendarPost(accessToken as string, '/calendars/primary/events/watch', { id, type: 'web_hook', address: `${receiverUrl}/hook` });
    google.switches.calendar.loseNextWatchAnswers(1);
    await expect(watch('lost-channel')).rejects.toThrow();
    expect(google.calls.at(-1)).toMatchObject({ endpoint: 'eventsWatch', answerLost: true });
    expect(google.liveChannels().map((live) => live.id)).toContain('lost-channel');

    const answered = (await (await watch('answered-channel')).json()) as { resourceId: string };
    const stop = await calendarPost(accessToken as string, '/channels/stop', { id: 'lost-channel', resourceId: answered.resourceId });
    expect(stop.status).toBe(204);
    expect(google.liveChannels().map((live) => live.id)).not.toContain('lost-channel');
  });

  it('signs security event tokens with its published key and POSTs them to the receiver', async () => {
    google.registerRiscReceiver(`${receiverUrl}/risc`);
    const delivery = await google.sendSecurityEvent('666666666666666666666', 'tokens-revoked');
    expect(delivery.status).toBe(202);
    expect(received[0]).toMatchObject({ path: '/risc', headers: expect.objectContaining({ 'content-type': 'application/secevent+jwt' }), body: delivery.token });
    const keys = createLocalJWKSet((await (await fetch(google.riscJwksUrl)).json()) as JSONWebKeySet);
    const { payload } = await jwtVerify(delivery.token, keys, { issuer: google.riscIssuer, audience: CLIENT_ID });
    expect(payload).toMatchObject({
      jti: delivery.jti,
      events: { 'https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked': { subject: { subject_type: 'iss-sub', iss: google.riscIssuer, sub: '666666666666666666666' } } },
    });
    expect(payload.exp).toBeUndefined();

    const forged = await google.sendSecurityEvent('666666666666666666666', 'tokens-revoked', { signer: 'untrusted' });
    await expect(jwtVerify(forged.token, keys)).rejects.toThrow(/signature verification failed/);
    await expect(google.sendSecurityEvent('6', 'verification', { receiverUrl: 'https://example.com/risc' })).rejects.toThrow(/loopback/);
  });
});
