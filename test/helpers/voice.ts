import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { sql } from 'slonik';
import { z } from 'zod';
import { startFakeAmazon, type FakeAmazon } from '../../fakes/amazon';
import { generateServiceAccountKey, startFakeGoogleHome, type FakeGoogleHome } from '../../fakes/google-home';
import { createAlexaRequestVerifier } from '../../platform/voice/alexa-request-verification';
import { alexaRequestBody, createAlexaTestSigner, type AlexaTestSigner } from './alexa-signing';
import { eventually } from './eventually';
import { authorizePath, TestBrowser, WITHOUT_PKCE } from './oauth-browser';
import { ADMIN_TOKEN } from './oauth-server';
import { startTestPlatform, TEST_PASSWORD, type TestPlatform } from './platform';

/**
 * The whole platform with Alexa and Google Home as they reach it: the fake Login with Amazon and
 * event gateway, the fake Home Graph, a test certificate authority standing in for Amazon's request
 * signing, and voice clients created through the admin API. Accounts are linked through our real
 * authorize, login, consent and token endpoints, the way each platform does it.
 */

export const SKILL_ID = 'amzn1.ask.skill.00000000-0000-0000-0000-00000000test';
export const VENDOR_ID = 'M2TESTVENDOR7';
export const PROJECT_ID = 'pm-home-test';
export const LWA_CLIENT = { clientId: 'amzn1.application-oa2-client.test', clientSecret: 'lwa-client-secret-for-tests-0123456789' };
export const RELAY_TOKEN = 'alexa-relay-token-for-tests-0123456789abcdef';
export const ALEXA_REDIRECT_URI = `https://pitangui.amazon.com/api/skill/link/${VENDOR_ID}`;
export const GOOGLE_REDIRECT_URI = `https://oauth-redirect.googleusercontent.com/r/${PROJECT_ID}`;

export interface VoiceClient {
  platform: 'alexa' | 'google';
  clientId: string;
  clientSecret: string;
}

export interface LinkedAccount {
  userId: string;
  email: string;
  sessionToken: string;
  client: VoiceClient;
  accessToken: string;
  refreshToken: string;
  /** The state the platform sent, and the one our redirect carried back. */
  sentState: string;
  returnedState: string;
}

export interface VoiceTestPlatform {
  platform: TestPlatform;
  amazon: FakeAmazon;
  googleHome: FakeGoogleHome;
  signer: AlexaTestSigner;
  alexaClient: VoiceClient;
  googleClient: VoiceClient;
  close(): Promise<void>;
}

/**
 * On the time-skipping server, `clock` is the simulated clock: the fakes, the api-server and the
 * voice clients read its `now`, the activities its `activityClock`.
 */
export interface VoiceTestPlatformOptions {
  clock?: { now: () => number; activityClock: () => Date };
  /** Without `clock`: what the api-server alone takes now to be (the fakes and activities keep real time). */
  serverClock?: () => Date;
  activityInterceptors?: ActivityInterceptorsFactory[];
  /** How long the fake Login with Amazon's access tokens live (LWA's own: 3600 s). */
  lwaAccessTokenLifetimeSeconds?: number;
  /** False: no worker runs the workflows (the fuzz wants no change it did not cause). */
  worker?: boolean;
}

/**
 * A server clock stopped twenty minutes ago, for tests that say "today" as the server does: the day
 * cannot change under them, and every access token the server issues has expired in real time
 * (ACCESS_TOKEN_TTL_SECONDS, 15 minutes by default), so anything that checks a token on real time
 * instead of the server's clock fails.
 */
export function stoppedServerClock(): { now: Date; clock: () => Date } {
  const now = new Date(Date.now() - 20 * 60_000);
  return { now, clock: () => now };
}

/** Every Login with Amazon, event-gateway and Home Graph setting pointed at the fakes, so no test calls Amazon or Google. */
export function voicePlatformEnvironment(
  amazon: FakeAmazon,
  lwaClient: { clientId: string; clientSecret: string },
  googleHome: FakeGoogleHome,
  serviceAccountKeyJson: string,
): Record<string, string> {
  return {
    ALEXA_LWA_CLIENT_ID: lwaClient.clientId,
    ALEXA_LWA_CLIENT_SECRET: lwaClient.clientSecret,
    ALEXA_LWA_TOKEN_URL: amazon.tokenUrl,
    ALEXA_EVENT_GATEWAY_NA_URL: amazon.gatewayUrls.NA,
    ALEXA_EVENT_GATEWAY_EU_URL: amazon.gatewayUrls.EU,
    ALEXA_EVENT_GATEWAY_FE_URL: amazon.gatewayUrls.FE,
    GOOGLE_HOME_SERVICE_ACCOUNT_KEY: serviceAccountKeyJson,
    GOOGLE_HOME_TOKEN_URL: googleHome.tokenUrl,
    GOOGLE_HOME_GRAPH_URL: googleHome.homeGraphUrl,
  };
}

export async function startVoiceTestPlatform(
  temporal: TestWorkflowEnvironment,
  environment: Record<string, string> = {},
  options: VoiceTestPlatformOptions = {},
): Promise<VoiceTestPlatform> {
  const now = options.clock?.now;
  const amazon = await startFakeAmazon({
    ...LWA_CLIENT,
    ...(now ? { clock: now } : {}),
    ...(options.lwaAccessTokenLifetimeSeconds ? { accessTokenLifetimeSeconds: options.lwaAccessTokenLifetimeSeconds } : {}),
  });
  const serviceAccount = generateServiceAccountKey({ projectId: PROJECT_ID });
  const googleHome = await startFakeGoogleHome({ serviceAccount: serviceAccount.account, ...(now ? { clock: now } : {}) });
  const signer = await createAlexaTestSigner();
  const platform = await startTestPlatform({
    temporal,
    ...(options.clock ? { clock: options.clock.activityClock, serverClock: () => new Date(options.clock!.now()) } : {}),
    ...(!options.clock && options.serverClock ? { serverClock: options.serverClock } : {}),
    ...(options.activityInterceptors ? { activityInterceptors: options.activityInterceptors } : {}),
    ...(options.worker === false ? { worker: false } : {}),
    alexaRequestVerifier: createAlexaRequestVerifier(signer.verifierOptions(SKILL_ID)),
    environment: {
      ADMIN_API_TOKEN: ADMIN_TOKEN,
      ALEXA_SKILL_ID: SKILL_ID,
      ALEXA_VENDOR_ID: VENDOR_ID,
      ...voicePlatformEnvironment(amazon, LWA_CLIENT, googleHome, serviceAccount.json),
      ALEXA_RELAY_TOKEN: RELAY_TOKEN,
      GOOGLE_HOME_PROJECT_ID: PROJECT_ID,
      ...environment,
    },
  });
  const createClient = async (voicePlatform: 'alexa' | 'google'): Promise<VoiceClient> => {
    const created = await adminRequest(platform, 'POST', '/api/v1/admin/oauth/voice-clients', { platform: voicePlatform });
    if (created.status !== 201) throw new Error(`voice client creation answered ${created.status}: ${JSON.stringify(created.body)}`);
    return { platform: voicePlatform, clientId: created.body.client_id as string, clientSecret: created.body.client_secret as string };
  };
  return {
    platform,
    amazon,
    googleHome,
    signer,
    alexaClient: await createClient('alexa'),
    googleClient: await createClient('google'),
    async close() {
      await platform.close();
      await amazon.close();
      await googleHome.close();
    },
  };
}

export interface JsonAnswer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

async function jsonAnswer(response: Response): Promise<JsonAnswer> {
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

export async function sendJson(platform: TestPlatform, method: string, path: string, options: { body?: unknown; bearer?: string; headers?: Record<string, string> } = {}): Promise<JsonAnswer> {
  const response = await fetch(`${platform.apiUrl}${path}`, {
    method,
    headers: {
      ...(options.bearer ? { authorization: `Bearer ${options.bearer}` } : {}),
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...options.headers,
    },
    body: options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body),
  });
  return jsonAnswer(response);
}

export function adminRequest(platform: TestPlatform, method: string, path: string, body?: unknown): Promise<JsonAnswer> {
  return sendJson(platform, method, path, { bearer: ADMIN_TOKEN, ...(body === undefined ? {} : { body }) });
}

/** Posts a form as the voice client authenticates at our token endpoint: Alexa with HTTP Basic, Google with the credentials in the body. */
export async function postAsVoiceClient(platform: TestPlatform, path: string, client: VoiceClient, parameters: Record<string, string>): Promise<JsonAnswer> {
  const credentials: Record<string, string> = client.platform === 'google' ? { client_id: client.clientId, client_secret: client.clientSecret } : {};
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (client.platform === 'alexa') headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`).toString('base64')}`;
  const response = await fetch(`${platform.apiUrl}${path}`, { method: 'POST', headers, body: new URLSearchParams({ ...parameters, ...credentials }).toString() });
  return jsonAnswer(response);
}

/**
 * A new PM user (or `existingUser`) links their account for `client`'s platform: the platform's authorization request
 * (state; PKCE from Alexa, none from Google), our login page, our consent page, the code at the platform's
 * redirect URI, and the code exchanged at our token endpoint as that platform authenticates.
 */
export async function linkAccount(
  voice: VoiceTestPlatform,
  client: VoiceClient,
  scope = 'devices:control properties:read reservations:read',
  existingUser?: Pick<LinkedAccount, 'userId' | 'email' | 'sessionToken'>,
): Promise<LinkedAccount> {
  const { platform } = voice;
  const email = existingUser?.email ?? `voice-${randomUUID()}@example.com`;
  const { userId, sessionToken } = existingUser ?? (await platform.signUp(email));
  const redirectUri = client.platform === 'alexa' ? ALEXA_REDIRECT_URI : GOOGLE_REDIRECT_URI;
  const browser = new TestBrowser(platform.apiUrl);
  // Alexa's state is opaque and long; it must come back byte for byte.
  const state = `${client.platform}-${randomUUID()}.${'A'.repeat(40)}-_~`;
  const sendsPkce = client.platform === 'alexa';
  const request = authorizePath({ clientId: client.clientId, redirectUri, scope, state, ...(sendsPkce ? {} : { extra: WITHOUT_PKCE }) });
  const toLogin = await browser.get(request.path);
  if (toLogin.status !== 303) throw new Error(`authorize answered ${toLogin.status}: ${await toLogin.text()}`);
  const returnTo = new URL(toLogin.headers.get('location')!, platform.apiUrl).searchParams.get('return_to')!;
  const signedIn = await browser.signIn(email, TEST_PASSWORD, returnTo);
  if (signedIn.status !== 303) throw new Error(`sign-in answered ${signedIn.status}`);
  const consent = await browser.get(signedIn.headers.get('location')!);
  if (consent.status !== 200) throw new Error(`consent page answered ${consent.status}`);
  const approved = await browser.submit(await consent.text(), {}, 'approve');
  const location = new URL(approved.headers.get('location')!);
  if (`${location.origin}${location.pathname}` !== redirectUri) throw new Error(`redirected to ${location.href}`);
  const tokens = await postAsVoiceClient(platform, '/oauth/token', client, {
    grant_type: 'authorization_code',
    code: location.searchParams.get('code')!,
    redirect_uri: redirectUri,
    ...(sendsPkce ? { code_verifier: request.pkce.verifier } : {}),
  });
  if (tokens.status !== 200) throw new Error(`token endpoint answered ${tokens.status}: ${JSON.stringify(tokens.body)}`);
  return {
    userId,
    email,
    sessionToken,
    client,
    accessToken: tokens.body.access_token as string,
    refreshToken: tokens.body.refresh_token as string,
    sentState: state,
    returnedState: location.searchParams.get('state')!,
  };
}

/** Introspection by the token's own client: what the platform would learn about its token. */
export async function introspect(platform: TestPlatform, client: VoiceClient, token: string): Promise<Record<string, unknown>> {
  const answer = await postAsVoiceClient(platform, '/oauth/introspect', client, { token });
  if (answer.status !== 200) throw new Error(`introspection answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  return answer.body;
}

const deviceRow = z.object({
  id: z.string(),
  status: z.string(),
  workflowId: z.string(),
  workflowStartedAt: z.number().nullable(),
  alexaUserId: z.string().nullable(),
  alexaRegion: z.string().nullable(),
  lwaAccessTokenEnc: z.string().nullable(),
  lwaRefreshTokenEnc: z.string().nullable(),
  lwaGrantCodeEnc: z.string().nullable(),
  unlinkReason: z.string().nullable(),
});
export type TestDeviceRow = z.infer<typeof deviceRow>;

/** The device row of a user's link (there is one per linked account in these tests). */
export function deviceOf(platform: TestPlatform, userId: string): Promise<TestDeviceRow> {
  return platform.db.one(sql.type(deviceRow)`
    SELECT id, status, workflow_id AS "workflowId", workflow_started_at AS "workflowStartedAt", alexa_user_id AS "alexaUserId",
           alexa_region AS "alexaRegion", lwa_access_token_enc AS "lwaAccessTokenEnc", lwa_refresh_token_enc AS "lwaRefreshTokenEnc",
           lwa_grant_code_enc AS "lwaGrantCodeEnc", unlink_reason AS "unlinkReason"
    FROM voice_devices WHERE user_id = ${userId}`);
}

/** Tokens of the user's device grant that are not revoked, access and refresh (whatever introspection may say). */
export function unrevokedDeviceTokens(platform: TestPlatform, userId: string): Promise<number> {
  return platform.db.oneFirst(sql.type(z.object({ count: z.number() }))`
    SELECT (SELECT count(*) FROM oauth_access_tokens t WHERE t.grant_id = d.grant_id AND t.revoked_at IS NULL)::int
         + (SELECT count(*) FROM oauth_refresh_tokens t WHERE t.grant_id = d.grant_id AND t.revoked_at IS NULL)::int AS count
    FROM voice_devices d WHERE d.user_id = ${userId}`);
}

/** Reads until `predicate` holds of what was read (eventually's polling), and answers that. */
export async function waitFor<T>(read: () => Promise<T>, predicate: (value: T) => boolean, description: string, timeoutMs = 30_000): Promise<T> {
  const matched = await eventually(async () => {
    const value = await read();
    return predicate(value) && { value };
  }, timeoutMs, description);
  return matched.value;
}

/** A linked device whose workflow has started. */
export function linkedDevice(platform: TestPlatform, userId: string): Promise<TestDeviceRow> {
  return waitFor(() => deviceOf(platform, userId), (device) => device.status === 'linked' && device.workflowStartedAt !== null, 'the device workflow start');
}

export function unlinkedDevice(platform: TestPlatform, userId: string): Promise<TestDeviceRow> {
  return waitFor(() => deviceOf(platform, userId), (device) => device.status === 'unlinked', 'the unlink');
}

export async function auditRows(platform: TestPlatform, action: string): Promise<Array<Record<string, unknown>>> {
  const rows = await platform.db.any(sql.type(z.object({ row: z.record(z.unknown()) }))`
    SELECT row_to_json(a) AS row FROM audit_log a WHERE action = ${action} ORDER BY id`);
  return rows.map((entry) => entry.row);
}

/** A property of the user with one confirmed stay (check-in and check-out as YYYY-MM-DD) and its guest. */
export async function seedStay(platform: TestPlatform, userId: string, stay: { property: string; guest: string | null; checkIn: string; checkOut: string; status?: 'confirmed' | 'cancelled' }): Promise<string> {
  const propertyId = await platform.db.oneFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO properties (owner_user_id, name) VALUES (${userId}, ${stay.property}) RETURNING id`);
  const connectionId = await airbnbConnectionOf(platform, userId);
  await platform.db.query(sql.unsafe`
    INSERT INTO reservations (connection_id, provider, external_id, external_listing_id, property_id, status, guest_name, check_in, check_out)
    VALUES (${connectionId}, 'airbnb', ${randomUUID()}, 'listing', ${propertyId}, ${stay.status ?? 'confirmed'}, ${stay.guest},
            ${stay.checkIn}::date, ${stay.checkOut}::date)`);
  return propertyId;
}

/** The user's (one live) Airbnb connection, which reservations come through; created on first use. */
async function airbnbConnectionOf(platform: TestPlatform, userId: string): Promise<string> {
  const existing = await platform.db.maybeOneFirst(sql.type(z.object({ id: z.string() }))`
    SELECT id FROM integration_connections WHERE user_id = ${userId} AND provider = 'airbnb'`);
  if (existing) return existing;
  const connectionId = randomUUID();
  await platform.db.query(sql.unsafe`
    INSERT INTO integration_connections (id, user_id, provider, status, workflow_id)
    VALUES (${connectionId}, ${userId}, 'airbnb', 'active', ${`connection:airbnb:${connectionId}`})`);
  return connectionId;
}

/** A signed request straight from Alexa to the skill endpoint. */
export async function sendSkillRequest(
  voice: VoiceTestPlatform,
  request: { type: string; accessToken?: string; userId?: string; timestamp?: Date; skillId?: string; extra?: Record<string, unknown>; apiEndpoint?: string },
  tamper: { body?: (body: string) => string; headers?: (headers: Record<string, string>) => Record<string, string> } = {},
): Promise<JsonAnswer & { requestBody: string; headersSent: Record<string, string> }> {
  let body = alexaRequestBody({
    skillId: request.skillId ?? SKILL_ID,
    type: request.type,
    timestamp: request.timestamp ?? new Date(),
    ...(request.userId ? { userId: request.userId } : {}),
    ...(request.accessToken ? { accessToken: request.accessToken } : {}),
    ...(request.extra ? { extra: request.extra } : {}),
  });
  if (request.apiEndpoint) {
    const parsed = JSON.parse(body) as { context: { System: Record<string, unknown> } };
    parsed.context.System.apiEndpoint = request.apiEndpoint;
    body = JSON.stringify(parsed);
  }
  // A unique request id, as Alexa gives each request.
  body = body.replace(/"requestId":"[^"]*"/, `"requestId":"amzn1.echo-api.request.${randomUUID()}"`);
  let headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8', ...voice.signer.sign(body) };
  if (tamper.headers) headers = tamper.headers(headers);
  const sent = tamper.body ? tamper.body(body) : body;
  const response = await fetch(`${voice.platform.apiUrl}/api/v1/voice/alexa/skill`, { method: 'POST', headers, body: sent });
  return { ...(await jsonAnswer(response)), requestBody: sent, headersSent: headers };
}

/** Replays exactly what was sent before. */
export async function resendSkillRequest(voice: VoiceTestPlatform, sent: { requestBody: string; headersSent: Record<string, string> }): Promise<JsonAnswer> {
  return jsonAnswer(await fetch(`${voice.platform.apiUrl}/api/v1/voice/alexa/skill`, { method: 'POST', headers: sent.headersSent, body: sent.requestBody }));
}

export interface RelayOptions {
  token?: string;
  /** The region of the Lambda that received the request (X-Alexa-Region); NA unless given, none when null. */
  region?: 'NA' | 'EU' | 'FE' | null;
}

/** What the operator's relay function forwards: a smart-home directive, or a skill event (`body` as Alexa sent it). */
export function relayToUs(voice: VoiceTestPlatform, body: Record<string, unknown>, options: RelayOptions = {}): Promise<JsonAnswer> {
  const region = options.region === undefined ? 'NA' : options.region;
  return sendJson(voice.platform, 'POST', '/api/v1/voice/alexa/smart-home', {
    bearer: options.token ?? RELAY_TOKEN,
    body,
    ...(region === null ? {} : { headers: { 'x-alexa-region': region } }),
  });
}

export function relayDirective(voice: VoiceTestPlatform, directive: Record<string, unknown>, options: RelayOptions = {}): Promise<JsonAnswer> {
  return relayToUs(voice, { directive }, options);
}

/** A skill event as Amazon sends it to a smart-home skill's function, which forwards it as it is. */
export function relaySkillEvent(
  voice: VoiceTestPlatform,
  event: { type: string; userId?: string; skillId?: string; extra?: Record<string, unknown> },
  options: RelayOptions = {},
): Promise<JsonAnswer> {
  const body = alexaRequestBody({ skillId: event.skillId ?? SKILL_ID, type: event.type, timestamp: new Date(), ...(event.userId ? { userId: event.userId } : {}), ...(event.extra ? { extra: event.extra } : {}) });
  return relayToUs(voice, JSON.parse(body) as Record<string, unknown>, options);
}

export function acceptGrantDirective(code: string, granteeToken: string): Record<string, unknown> {
  return {
    header: { namespace: 'Alexa.Authorization', name: 'AcceptGrant', messageId: randomUUID(), payloadVersion: '3' },
    payload: { grant: { type: 'OAuth2.AuthorizationCode', code }, grantee: { type: 'BearerToken', token: granteeToken } },
  };
}

/** A Google Home intent sent to our fulfillment with the linked account's access token. */
export function fulfill(platform: TestPlatform, accessToken: string | undefined, inputs: Array<Record<string, unknown>>): Promise<JsonAnswer> {
  return sendJson(platform, 'POST', '/api/v1/voice/google/fulfillment', { ...(accessToken ? { bearer: accessToken } : {}), body: { requestId: randomUUID(), inputs } });
}
