import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { findLiveSession, insertSession } from '../../db/queries/users';
import { startFakeBooking, type FakeBooking } from '../../fakes/booking';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { startFakeMicrosoft, type FakeMicrosoft } from '../../fakes/microsoft';
import type { FakeAirbnb } from '../../fakes/airbnb';
import { registerClient } from '../../platform/oauth-server/clients';
import { OAUTH_ERROR_CODES } from '../../platform/oauth-server/errors';
import { hashBearerValue, randomToken } from '../../platform/secrets';
import { ensureRealityPortalClient } from '../../platform/sso/portal-client';
import { createUser } from '../../platform/users';
import { AIRBNB_WEBHOOK_SECRET, airbnbEnvironment, startTestAirbnb } from '../helpers/airbnb';
import { BOOKING_TEST_ACCOUNT, bookingEnvironment } from '../helpers/booking';
import { microsoftEnvironment } from '../helpers/microsoft';
import { INITIAL_ACCESS_TOKEN, ADMIN_TOKEN } from '../helpers/oauth-server';
import { fakeGoogleEnvironment, GOOGLE_TEST_CLIENT, type TestPlatform } from '../helpers/platform';
import { startTemporalDevServer } from '../helpers/temporal';
import { ALEXA_REDIRECT_URI, linkAccount, RELAY_TOKEN, startVoiceTestPlatform, type LinkedAccount, type VoiceTestPlatform } from '../helpers/voice';
import { eventually } from '../helpers/eventually';
import { DatabaseFingerprint, errorShapeViolation, FUZZ_SEED, fuzzFailure, fuzzRequest, routesFromOpenApi, send, type FuzzContext, type OpenApiDocument, type RawRequest } from './http-fuzz';

/**
 * Issue 11, bad input: every route of the api-server's OpenAPI document, fed hostile requests by
 * fast-check (fixed seed; FUZZ_SEED to replay another) as anonymous callers, a signed-in PM user, a
 * voice client and its linked account's bearer, the operator. Every answer is below 500 and, when it
 * is an error, in the shape the route documents; a refused request changes nothing in the database but
 * the audit log and bookkeeping (see http-fuzz.ts). No worker runs: nothing else writes meanwhile.
 */

const RUNS_PER_ROUTE = Number(process.env.FUZZ_RUNS ?? 14);

describe('fuzz: every api-server endpoint', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let microsoft: FakeMicrosoft;
  let airbnb: FakeAirbnb;
  let booking: FakeBooking;
  let voice: VoiceTestPlatform;
  let platform: TestPlatform;
  let linked: LinkedAccount;
  let fingerprint: DatabaseFingerprint;
  let document: OpenApiDocument;
  let session: { userId: string; token: string };

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    [google, microsoft, airbnb, booking] = await Promise.all([
      startFakeGoogle(GOOGLE_TEST_CLIENT),
      startFakeMicrosoft({ clientId: '6731de76-14a6-49ae-97bc-6eba6914391e', clientSecret: 'Xk38Q~fake-microsoft-client-secret-value' }),
      startTestAirbnb(),
      startFakeBooking({ clientId: BOOKING_TEST_ACCOUNT.clientId, clientSecret: BOOKING_TEST_ACCOUNT.clientSecret }),
    ]);
    voice = await startVoiceTestPlatform(
      temporal,
      {
        ...fakeGoogleEnvironment(google),
        ...microsoftEnvironment(microsoft),
        ...airbnbEnvironment(airbnb),
        ...bookingEnvironment(booking, { pollIntervalSeconds: 20, ackPauseMs: 0 }),
        OAUTH_INITIAL_ACCESS_TOKEN: INITIAL_ACCESS_TOKEN,
        REALITY_PUBLIC_URL: 'http://127.0.0.1:9',
        REALITY_OIDC_CLIENT_SECRET: 'reality-portal-client-secret-for-the-fuzz-0123456789',
      },
      { worker: false },
    );
    platform = voice.platform;
    await ensureRealityPortalClient(platform.db, platform.audit, platform.config);
    linked = await linkAccount(voice, voice.alexaClient);
    // The link starts the device's workflow after answering; the fuzz starts once that write is done.
    await eventually(
      async () => (await platform.db.oneFirst(sql.type(z.object({ started: z.number() }))`SELECT count(*)::int AS started FROM voice_devices WHERE workflow_started_at IS NOT NULL`)) > 0,
      30_000,
      'the linked device workflow to be recorded as started',
    );
    const signedIn = await platform.signUp('fuzz@example.com');
    session = { userId: signedIn.userId, token: signedIn.sessionToken };
    document = (await (await fetch(`${platform.apiUrl}/openapi.json`)).json()) as OpenApiDocument;
    fingerprint = await DatabaseFingerprint.of(platform.config.databaseUrl!);
  });

  afterAll(async () => {
    await fingerprint?.close();
    await voice?.close();
    await Promise.all([google?.close(), microsoft?.close(), airbnb?.close(), booking?.close()]);
    await temporal?.teardown();
  });

  /** The fuzz may sign its own user out (a valid logout is a valid request): it signs in again, outside any request's before and after. */
  async function keepSignedIn(): Promise<void> {
    if (await findLiveSession(platform.db, hashBearerValue(session.token), platform.config.sso.sessionIdleSeconds)) return;
    session.token = randomToken();
    await insertSession(platform.db, { userId: session.userId, tokenHash: hashBearerValue(session.token), expiresAt: new Date(Date.now() + 3600_000) });
  }

  const SESSION = '{session}';
  const resolve = (request: RawRequest): RawRequest => {
    const replace = (value: string) => value.replaceAll(SESSION, session.token);
    return {
      ...request,
      headers: Object.fromEntries(Object.entries(request.headers).map(([name, value]) => [name, Array.isArray(value) ? value.map(replace) : replace(value)])),
    };
  };

  async function context(): Promise<FuzzContext> {
    // Rows the fuzz may change or delete by a valid request without losing its own credentials.
    const victim = await createUser(platform.db, { email: 'victim@example.com', displayName: 'Victim', password: 'victim password 123' });
    const { client: victimClient } = await registerClient(platform.db, {
      name: 'Victim client',
      tokenEndpointAuthMethod: 'client_secret_basic',
      redirectUris: ['https://client.example/callback'],
      grantTypes: ['authorization_code', 'refresh_token'],
      scopes: ['properties:read', 'offline_access'],
      kind: 'third_party',
      registeredBy: 'admin',
    });
    const alexa = voice.alexaClient;
    const basic = `Basic ${Buffer.from(`${encodeURIComponent(alexa.clientId)}:${encodeURIComponent(alexa.clientSecret)}`).toString('base64')}`;
    return {
      authorizations: [`Bearer ${SESSION}`, `Bearer ${linked.accessToken}`, `Bearer ${ADMIN_TOKEN}`, `Bearer ${RELAY_TOKEN}`, `Bearer ${INITIAL_ACCESS_TOKEN}`, basic],
      cookies: [`pm_session=${SESSION}`],
      hints: {
        id: [victimClient.id, '00000000-0000-4000-8000-000000000000'],
        clientId: [alexa.clientId, voice.googleClient.clientId],
        client_id: [alexa.clientId, victimClient.id],
        userId: [victim.id],
        user_id: [victim.id],
        pmRole: ['owner', 'agent', 'viewer'],
        listingId: ['1', '9999999'],
        response_type: ['code', 'token', 'code id_token'],
        redirect_uri: [ALEXA_REDIRECT_URI, 'https://client.example/callback'],
        scope: ['openid', 'properties:read offline_access', 'devices:control'],
        code_challenge_method: ['S256', 'plain'],
        prompt: ['none', 'login', 'consent', 'select_account'],
        grant_type: ['authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange', 'password'],
        token: [linked.accessToken, 'x'],
        token_type_hint: ['access_token', 'refresh_token'],
        refresh_token: ['not-a-refresh-token'],
        email: ['fuzz@example.com', 'victim@example.com'],
        password: ['wrong password'],
        'x-goog-resource-state': ['sync', 'exists', 'not_exists'],
        'x-goog-message-number': ['1', '-1', '99999999999999999999'],
        'x-goog-channel-id': ['00000000-0000-0000-0000-000000000000'],
        validationToken: ['abc'],
        platform: ['alexa', 'google'],
        webhookSecret: [AIRBNB_WEBHOOK_SECRET],
      },
    };
  }

  it('reaches every documented route and answers each hostile request below 500, in the documented error shape, changing nothing when it refuses', async () => {
    const routes = routesFromOpenApi(document).filter((route) => route.path !== '/openapi.json');
    expect(routes.length).toBeGreaterThan(60);
    const fuzzContext = await context();
    const failures: string[] = [];
    const statuses = new Map<string, Set<number>>();

    for (const [index, route] of routes.entries()) {
      const name = `${route.method} ${route.path}`;
      const seen = new Set<number>();
      statuses.set(name, seen);
      const property = fc.asyncProperty(fuzzRequest(route, fuzzContext), async (generated) => {
        await keepSignedIn();
        const request = resolve(generated);
        const before = await fingerprint.take();
        const response = await send(platform.apiUrl, request);
        const after = await fingerprint.take();
        seen.add(response.status);
        if (response.status >= 500) throw new Error(`answered ${response.status}: ${response.text.slice(0, 300)}`);
        const shape = errorShapeViolation(route, response, OAUTH_ERROR_CODES);
        if (shape) throw new Error(shape);
        const changed = DatabaseFingerprint.changedTables(before, after);
        if (response.status >= 400 && changed.length > 0) throw new Error(`refused with ${response.status} but changed ${changed.join(', ')}: ${response.text.slice(0, 200)}`);
      });
      try {
        // One seed per route, derived from the run's: a route added later does not reshuffle the others.
        await fc.assert(property, { seed: FUZZ_SEED + index, numRuns: RUNS_PER_ROUTE, endOnFailure: true });
      } catch (error) {
        failures.push(`${name} (FUZZ_SEED=${FUZZ_SEED}, route seed ${FUZZ_SEED + index}): ${fuzzFailure(error)}`);
      }
    }

    expect(failures, failures.join('\n\n')).toEqual([]);
    // Still alive after it all.
    expect((await fetch(`${platform.apiUrl}/healthz`)).status).toBe(200);
    // Auth was reached, not only refused: some answers behind credentials were not 401.
    const beyondAuth = [...statuses.values()].filter((seen) => [...seen].some((status) => status !== 401 && status !== 404));
    expect(beyondAuth.length).toBeGreaterThan(routes.length / 2);
  });
});
