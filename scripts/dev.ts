import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { buildApiServer } from '../api/app';
import { buildCodecServer } from '../api/codec-server';
import { buildRealityServer } from '../api/reality/app';
import { startEmbeddedPostgres } from '../db/embedded';
import { migrate } from '../db/migrate';
import { findUserCredentials } from '../db/queries/users';
import { startFakeBooking } from '../fakes/booking';
import { startFakeGoogle, type FakeGoogle } from '../fakes/google';
import { startFakeAirbnb } from '../fakes/airbnb';
import { startFakeMicrosoft } from '../fakes/microsoft';
import { startFakeAmazon } from '../fakes/amazon';
import { generateServiceAccountKey, startFakeGoogleHome } from '../fakes/google-home';
import { loadConfig } from '../platform/config';
import { DEV_DATA_DIR, readOrCreate } from '../platform/dev-secrets';
import { generateEncryptionKey } from '../platform/integration-crypto';
import { createPayloadCodec } from '../platform/payload-codec';
import { runUntilSignalled } from '../platform/process';
import { randomToken } from '../platform/secrets';
import { createPlatformServices } from '../platform/services';
import { createSsoSessionSync } from '../platform/sso/backchannel-delivery';
import { ensureRealityPortalClient } from '../platform/sso/portal-client';
import { findUserView, setUserRoles } from '../platform/sso/user-administration';
import { connectTemporalClient } from '../platform/temporal';
import { createUser } from '../platform/users';
import { createConnectionWorker, workerSizing } from '../worker/worker';
import { ensureHousekeepingSchedule } from '../worker/schedules';
import { registerSearchAttributes } from '../worker/search-attributes';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../workflows/search-attributes';
import { ensureTemporalCli } from './temporal-binaries';
import { PRIORITY_DISPATCH_ARGS } from './temporal-dynamic-config';

/**
 * `npm run dev`: the whole platform on one machine, nothing installed by hand. Uses DATABASE_URL and
 * TEMPORAL_ADDRESS when they are set, else starts an embedded PostgreSQL and a Temporal dev server
 * persisted under .data/dev. Without Google credentials, sandbox mode points Google at the fake.
 */

const DATA_DIR = DEV_DATA_DIR;
const SANDBOX_GOOGLE_PORT = 4010;
const SANDBOX_MICROSOFT_PORT = 4011;
const SANDBOX_MICROSOFT_CLIENT = { clientId: 'sandbox-microsoft-client', clientSecret: 'sandbox-microsoft-secret' };
const SANDBOX_CLIENT = { clientId: 'sandbox-client.apps.googleusercontent.com', clientSecret: 'sandbox-client-secret' };
const SANDBOX_AIRBNB_PORT = 4012;
const SANDBOX_AIRBNB_CLIENT = { clientId: 'sandbox-airbnb-api-key', clientSecret: 'sandbox-airbnb-secret' };
const SANDBOX_BOOKING_PORT = 4013;
const SANDBOX_BOOKING_ACCOUNT = { clientId: 'SANDBOX-MACHINE-ACCOUNT', clientSecret: 'sandbox-booking-secret' };
const SANDBOX_AMAZON_PORT = 4014;
const SANDBOX_LWA_CLIENT = { clientId: 'amzn1.application-oa2-client.sandbox', clientSecret: 'sandbox-lwa-secret' };
const SANDBOX_GOOGLE_HOME_PORT = 4015;
const DEMO_EMAIL = 'demo@example.com';
// Mapped onto the portal roles portal_admin and listing_editor (the default role mappings).
const DEMO_ROLES = ['owner'];
const TEMPORAL_PORT = 7233;
const TEMPORAL_UI_PORT = 8233;

await runUntilSignalled('dev', async () => {
  await mkdir(DATA_DIR, { recursive: true });
  const stops: Array<() => Promise<void>> = [];
  const lines: string[] = [];
  const environment: Record<string, string | undefined> = { API_HOST: '127.0.0.1', REALITY_HOST: '127.0.0.1', ...process.env, APP_ENV: 'development', SESSION_COOKIE_SECURE: 'false' };

  if (!environment.DATABASE_URL) {
    const postgres = await startEmbeddedPostgres({ dataDir: path.join(DATA_DIR, 'postgres'), port: 54329 });
    stops.push(() => postgres.stop());
    environment.DATABASE_URL = postgres.url;
    lines.push(`PostgreSQL        embedded, ${postgres.url.replace(/:[^:@/]*@/, ':***@')} (data in .data/dev/postgres)`);
  } else {
    lines.push('PostgreSQL        DATABASE_URL');
  }

  if (!environment.INTEGRATION_ENCRYPTION_KEY) {
    const key = await readOrCreate(path.join(DATA_DIR, 'integration-encryption-key'), generateEncryptionKey);
    environment.INTEGRATION_ENCRYPTION_KEY = key.value;
    lines.push(`Encryption key    ${key.created ? 'GENERATED for development and saved' : 'development key'} in .data/dev/integration-encryption-key`);
  }

  if (!environment.TEMPORAL_PAYLOAD_KEY) {
    // Its own key, not the integration key: see README "Reading payloads in Temporal Web".
    const key = await readOrCreate(path.join(DATA_DIR, 'temporal-payload-key'), generateEncryptionKey);
    environment.TEMPORAL_PAYLOAD_KEY = key.value;
    lines.push(`Payload key       ${key.created ? 'GENERATED for development and saved' : 'development key'} in .data/dev/temporal-payload-key`);
  }
  if (!environment.CODEC_SERVER_TOKEN) {
    environment.CODEC_SERVER_TOKEN = (await readOrCreate(path.join(DATA_DIR, 'codec-server-token'), randomToken)).value;
  }
  if (!environment.REALITY_OIDC_CLIENT_SECRET) {
    // The Reality Portal's secret as the api-server's OpenID Connect client: single sign-on works out of the box.
    environment.REALITY_OIDC_CLIENT_SECRET = (await readOrCreate(path.join(DATA_DIR, 'reality-oidc-client-secret'), randomToken)).value;
  }
  const codecPort = environment.CODEC_SERVER_PORT ?? '8234';
  const codecServerUrl = `http://localhost:${codecPort}`;

  let sandboxGoogle: FakeGoogle | undefined;
  if (!environment.GOOGLE_CLIENT_ID) {
    sandboxGoogle = await startFakeGoogle({ ...SANDBOX_CLIENT, port: SANDBOX_GOOGLE_PORT });
    stops.push(() => sandboxGoogle!.close());
    Object.assign(environment, {
      GOOGLE_CLIENT_ID: SANDBOX_CLIENT.clientId,
      GOOGLE_CLIENT_SECRET: SANDBOX_CLIENT.clientSecret,
      GOOGLE_AUTHORIZE_URL: sandboxGoogle.authorizeUrl,
      GOOGLE_TOKEN_URL: sandboxGoogle.tokenUrl,
      GOOGLE_REVOKE_URL: sandboxGoogle.revokeUrl,
      GOOGLE_CALENDAR_API_URL: sandboxGoogle.calendarApiUrl,
      GOOGLE_RISC_JWKS_URL: sandboxGoogle.riscJwksUrl,
    });
    lines.push(`Sandbox Google    ${sandboxGoogle.url} (fake: approves every authorization at once)`);
  }

  if (!environment.MICROSOFT_CLIENT_ID) {
    const sandboxMicrosoft = await startFakeMicrosoft({ ...SANDBOX_MICROSOFT_CLIENT, port: SANDBOX_MICROSOFT_PORT });
    stops.push(() => sandboxMicrosoft.close());
    Object.assign(environment, {
      MICROSOFT_CLIENT_ID: SANDBOX_MICROSOFT_CLIENT.clientId,
      MICROSOFT_CLIENT_SECRET: SANDBOX_MICROSOFT_CLIENT.clientSecret,
      MICROSOFT_AUTHORIZE_URL: sandboxMicrosoft.authorizeUrl,
      MICROSOFT_TOKEN_URL: sandboxMicrosoft.tokenUrl,
      MICROSOFT_GRAPH_URL: sandboxMicrosoft.graphUrl,
    });
    lines.push(`Sandbox Microsoft ${sandboxMicrosoft.url} (fake: approves every authorization at once)`);
  }

  if (!environment.AIRBNB_CLIENT_ID) {
    const webhookSecret = environment.AIRBNB_WEBHOOK_SECRET ?? randomToken();
    const sandboxAirbnb = await startFakeAirbnb({ ...SANDBOX_AIRBNB_CLIENT, port: SANDBOX_AIRBNB_PORT, webhook: { secret: webhookSecret } });
    stops.push(() => sandboxAirbnb.close());
    // One listing with a booking, so a first connect shows the mapping and a sync at work.
    const host = sandboxAirbnb.createHost(['Sandbox Beach House']);
    const checkIn = new Date(Date.now() + 21 * 24 * 3600 * 1000);
    const checkOut = new Date(checkIn.getTime() + 4 * 24 * 3600 * 1000);
    sandboxAirbnb.createReservation({ listingId: host.listings[0]!.id, startDate: checkIn.toISOString().slice(0, 10), endDate: checkOut.toISOString().slice(0, 10), guestFirstName: 'Sandy' });
    Object.assign(environment, {
      AIRBNB_CLIENT_ID: SANDBOX_AIRBNB_CLIENT.clientId,
      AIRBNB_CLIENT_SECRET: SANDBOX_AIRBNB_CLIENT.clientSecret,
      AIRBNB_AUTHORIZE_URL: sandboxAirbnb.authorizeUrl,
      AIRBNB_API_URL: sandboxAirbnb.apiUrl,
      AIRBNB_WEBHOOK_SECRET: webhookSecret,
    });
    lines.push(`Sandbox Airbnb    ${sandboxAirbnb.url} (fake: approves every authorization at once)`);
  }

  if (!environment.BOOKING_AUTH_URL) {
    const sandboxBooking = await startFakeBooking({ ...SANDBOX_BOOKING_ACCOUNT, port: SANDBOX_BOOKING_PORT });
    stops.push(() => sandboxBooking.close());
    // One booking waits in the queue, so a first connect shows a sync at work.
    const checkIn = new Date(Date.now() + 14 * 24 * 3600 * 1000);
    const checkOut = new Date(checkIn.getTime() + 3 * 24 * 3600 * 1000);
    sandboxBooking.queueReservation({ hotelId: '1000001', guest: { givenName: 'Sandy', surname: 'Box' }, checkIn: checkIn.toISOString().slice(0, 10), checkOut: checkOut.toISOString().slice(0, 10) });
    Object.assign(environment, { BOOKING_AUTH_URL: sandboxBooking.authUrl, BOOKING_XML_URL: sandboxBooking.xmlUrl });
    lines.push(`Sandbox Booking   ${sandboxBooking.url} (fake; machine account ${SANDBOX_BOOKING_ACCOUNT.clientId} / ${SANDBOX_BOOKING_ACCOUNT.clientSecret})`);
  }

  if (!environment.ALEXA_LWA_CLIENT_ID) {
    const sandboxAmazon = await startFakeAmazon({ ...SANDBOX_LWA_CLIENT, port: SANDBOX_AMAZON_PORT });
    stops.push(() => sandboxAmazon.close());
    Object.assign(environment, {
      ALEXA_SKILL_ID: environment.ALEXA_SKILL_ID ?? 'amzn1.ask.skill.00000000-0000-0000-0000-000000000000',
      ALEXA_VENDOR_ID: environment.ALEXA_VENDOR_ID ?? 'SANDBOXVENDOR',
      ALEXA_LWA_CLIENT_ID: SANDBOX_LWA_CLIENT.clientId,
      ALEXA_LWA_CLIENT_SECRET: SANDBOX_LWA_CLIENT.clientSecret,
      ALEXA_LWA_TOKEN_URL: sandboxAmazon.tokenUrl,
      ALEXA_EVENT_GATEWAY_NA_URL: sandboxAmazon.gatewayUrls.NA,
      ALEXA_EVENT_GATEWAY_EU_URL: sandboxAmazon.gatewayUrls.EU,
      ALEXA_EVENT_GATEWAY_FE_URL: sandboxAmazon.gatewayUrls.FE,
    });
    lines.push(`Sandbox Amazon    ${sandboxAmazon.url} (fake Login with Amazon + event gateways; an AcceptGrant code: POST /sandbox/grant-codes)`);
  }

  if (!environment.GOOGLE_HOME_SERVICE_ACCOUNT_KEY) {
    // A key of its own each start: the fake forgets its tokens when it stops anyway.
    const serviceAccount = generateServiceAccountKey({ projectId: 'sandbox-smart-home' });
    const sandboxHome = await startFakeGoogleHome({ serviceAccount: serviceAccount.account, port: SANDBOX_GOOGLE_HOME_PORT });
    stops.push(() => sandboxHome.close());
    Object.assign(environment, {
      GOOGLE_HOME_PROJECT_ID: environment.GOOGLE_HOME_PROJECT_ID ?? 'sandbox-smart-home',
      GOOGLE_HOME_SERVICE_ACCOUNT_KEY: serviceAccount.json,
      GOOGLE_HOME_TOKEN_URL: sandboxHome.tokenUrl,
      GOOGLE_HOME_GRAPH_URL: sandboxHome.homeGraphUrl,
    });
    lines.push(`Sandbox Home Graph ${sandboxHome.url} (fake service-account tokens + Home Graph; link an agent user: POST /sandbox/agent-users/<id>)`);
  }

  Runtime.install({ logger: new DefaultLogger('WARN'), shutdownSignals: [] });
  let temporalEnvironment: TestWorkflowEnvironment | undefined;
  if (!environment.TEMPORAL_ADDRESS) {
    const cli = await ensureTemporalCli();
    temporalEnvironment = await TestWorkflowEnvironment.createLocal({
      server: {
        ...(cli ? { executable: { type: 'existing-path', path: cli } } : {}),
        ip: '127.0.0.1',
        port: TEMPORAL_PORT,
        ui: true,
        uiPort: TEMPORAL_UI_PORT,
        // Temporal Web asks the codec server to decode the payloads it shows.
        extraArgs: ['--ui-codec-endpoint', codecServerUrl, ...PRIORITY_DISPATCH_ARGS],
        dbFilename: path.join(DATA_DIR, 'temporal.sqlite'),
        log: { level: 'warn', format: 'pretty' },
      },
    });
    stops.push(() => temporalEnvironment!.teardown());
    environment.TEMPORAL_ADDRESS = `127.0.0.1:${TEMPORAL_PORT}`;
    lines.push(`Temporal          dev server at ${environment.TEMPORAL_ADDRESS} (history in .data/dev/temporal.sqlite)`);
    lines.push(`Temporal Web      http://localhost:${TEMPORAL_UI_PORT}`);
  } else {
    lines.push(`Temporal          ${environment.TEMPORAL_ADDRESS} (TEMPORAL_ADDRESS)`);
  }

  const config = loadConfig(environment);
  const payloadCodec = createPayloadCodec(config.payloadEncryption);
  await migrate(config.databaseUrl!);
  const services = await createPlatformServices(config);
  stops.push(() => services.db.end());

  // As the api-server's start does (api/main.ts): the portal is its first-party client.
  await ensureRealityPortalClient(services.db, services.audit, config);

  const demoPassword = await readOrCreate(path.join(DATA_DIR, 'demo-password'), () => randomToken().slice(0, 20));
  const demoUser = await findUserCredentials(services.db, DEMO_EMAIL);
  if (!demoUser) {
    await createUser(services.db, { email: DEMO_EMAIL, displayName: 'Demo User', password: demoPassword.value, roles: DEMO_ROLES });
  } else if ((await findUserView(services.db, demoUser.id))?.roles.length === 0) {
    // A demo user from before PM roles existed.
    await setUserRoles(services.db, services.audit, demoUser.id, DEMO_ROLES, { actor: { type: 'system', id: 'npm run dev' } });
  }

  // Before the worker: a workflow that upserts an unregistered search attribute fails its task.
  const operatorConnection = await Connection.connect({ address: config.temporal.address });
  const addedSearchAttributes = await registerSearchAttributes(operatorConnection, config.temporal.namespace).finally(() => operatorConnection.close());
  const searchAttributeNames = CUSTOM_SEARCH_ATTRIBUTES.map((key) => key.name).join(', ');
  lines.push(
    addedSearchAttributes.length > 0
      ? `Search attributes registered ${addedSearchAttributes.join(', ')} in namespace "${config.temporal.namespace}"`
      : `Search attributes ${searchAttributeNames} already registered in namespace "${config.temporal.namespace}"`,
  );

  const workerConnection = await NativeConnection.connect({ address: config.temporal.address });
  const worker = await createConnectionWorker({
    connection: workerConnection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    dependencies: { ...services, sso: createSsoSessionSync(config, services), clock: () => new Date() },
    payloadCodec,
    shutdownGraceSeconds: config.workerShutdownGraceSeconds,
    sizing: workerSizing(config),
  });
  const workerRun = worker.run();
  stops.push(async () => {
    worker.shutdown();
    await workerRun;
    await workerConnection.close();
  });
  lines.push(`Worker            task queue "${config.temporal.taskQueue}"`);

  const codecServer = await buildCodecServer({
    codec: payloadCodec,
    token: config.codecServer.token!,
    corsOrigin: config.codecServer.corsOrigin,
    logLevel: config.logLevel,
  });
  await codecServer.listen({ host: '127.0.0.1', port: config.codecServer.port });
  stops.push(() => codecServer.close());
  lines.push(`Codec server      ${codecServerUrl} (key ${payloadCodec.activeKeyId}; Temporal Web is pointed at it, see README "Reading payloads in Temporal Web")`);
  lines.push(`  operator token  ${config.codecServer.token} (.data/dev/codec-server-token)`);

  const temporal = await connectTemporalClient(config.temporal, payloadCodec);
  await ensureHousekeepingSchedule(temporal, config.temporal.taskQueue);
  const app = await buildApiServer({ ...services, config, temporal });
  await app.listen({ host: config.http.host, port: config.http.port });
  stops.push(async () => {
    await app.close();
    await temporal.connection.close();
  });
  const reality = await buildRealityServer({ config, db: services.db, temporal });
  await reality.listen({ host: config.realityServer.host, port: config.realityServer.port });
  stops.push(() => reality.close());
  const api = config.http.publicBaseUrl;
  const portal = config.sso.portal.publicUrl;
  lines.unshift(`api-server        ${api} (OpenAPI: ${api}/openapi.json)`, `reality-server    ${portal} (the Reality Portal; /healthz, /readyz)`);

  console.log(
    [
      '',
      'OAuth integration platform (development)',
      ...lines.map((line) => `  ${line}`),
      '',
      `  Demo user         ${DEMO_EMAIL} / ${demoPassword.value} (PM role ${DEMO_ROLES.join(', ')})`,
      '',
      '  Open the Reality Portal with the PM app\'s sign-in (two clicks in a browser):',
      `    1. ${api}/sso/reality-portal: sign in as the demo user`,
      '    2. press "Open Reality Portal": the portal shows the demo user and the portal roles mapped from their PM role',
      `  Or start at the portal: ${portal}/ → "Sign in with the PM app" (OpenID Connect).`,
      '',
      '  Connect Google Calendar from a terminal (follows the redirects like a browser):',
      `    curl -s -c .data/dev/cookies -H 'content-type: application/json' \\`,
      `      -d '{"email":"${DEMO_EMAIL}","password":"${demoPassword.value}"}' ${api}/api/v1/auth/login`,
      `    curl -s -b .data/dev/cookies -L ${api}/api/v1/integrations/google-calendar/auth`,
      `    curl -s -b .data/dev/cookies ${api}/api/v1/integrations/google-calendar/status`,
      '',
      '  Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );

  return async () => {
    for (const stop of stops.reverse()) await stop();
  };
});
