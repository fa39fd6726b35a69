import type { FastifyInstance } from 'fastify';
import { Client, type ClientOptions, type WorkflowClient } from '@temporalio/client';
import { TimeSkippingWorkflowClient, type TestWorkflowEnvironment } from '@temporalio/testing';
import {
  bundleWorkflowCode,
  DefaultLogger,
  Runtime,
  type ActivityInterceptorsFactory,
  type Worker,
} from '@temporalio/worker';
import { inject } from 'vitest';
import type { DestinationStream } from 'pino';
import { sql } from 'slonik';
import { z } from 'zod';
import { hashBearerValue } from '../../platform/secrets';
import { buildApiServer } from '../../api/app';
import type { AlexaRequestVerifier } from '../../platform/voice/alexa-request-verification';
import { migrate } from '../../db/migrate';
import type { FakeGoogle } from '../../fakes/google';
import { loadConfig, type Config } from '../../platform/config';
import { generateEncryptionKey } from '../../platform/integration-crypto';
import { createPayloadCodec, type PayloadEncryptionCodec } from '../../platform/payload-codec';
import { createPlatformServices, type PlatformServices } from '../../platform/services';
import { createSsoSessionSync, type SsoSessionSync } from '../../platform/sso/backchannel-delivery';
import { createConnectionWorker, WORKFLOWS_PATH, workerSizing } from '../../worker/worker';
import { createUser } from '../../platform/users';
import { statusQuery, type ConnectionState } from '../../workflows/connection-messages';
import { createTestDatabase } from './database';
import { timeSkippingLock } from './temporal';
import { freePort } from './ports';

export const GOOGLE_TEST_CLIENT = { clientId: 'test-client.apps.googleusercontent.com', clientSecret: 'GOCSPX-test-client-secret-value' };
export const TEST_PASSWORD = 'correct horse battery staple';

export interface TestPlatform extends PlatformServices {
  config: Config;
  /** The worker's SSO settings: the issuers, the portal client and both servers' signing keys. */
  sso: SsoSessionSync;
  api: FastifyInstance;
  apiUrl: string;
  temporal: TestWorkflowEnvironment;
  /** This platform's payload codec (its key is generated per platform, like production's TEMPORAL_PAYLOAD_KEY). */
  payloadCodec: PayloadEncryptionCodec;
  /**
   * A client on the test environment's connection that encrypts and decrypts payloads with this
   * platform's codec (`temporal.client` has no codec: it sees what Temporal stores). On the
   * time-skipping server, waiting on a result lets time skip, like the environment's own client.
   */
  client: Client;
  /** A signed-in PM user, as an API consumer would be. */
  signUp(email: string): Promise<{ userId: string; sessionToken: string }>;
  close(): Promise<void>;
}

/** What TestWorkflowEnvironment's own client is, plus a data converter. */
class CodecAwareTimeSkippingClient extends Client {
  constructor(options: ClientOptions) {
    super(options);
    (this as { workflow: WorkflowClient }).workflow = new TimeSkippingWorkflowClient({ ...this.workflow.options, connection: options.connection });
  }
}

// Worker state changes are not news in a test run; warnings and errors still show.
try {
  Runtime.install({ logger: new DefaultLogger('WARN') });
} catch {
  // another test file in this process installed it already
}

let bundle: Promise<Awaited<ReturnType<typeof bundleWorkflowCode>>> | undefined;

/** Bundling the workflows takes seconds; every platform in one test file shares the bundle. */
function workflowBundle() {
  bundle ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundlerLogger });
  return bundle;
}

const quietBundlerLogger = {
  log: () => {},
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (message: string, meta?: Record<string, unknown>) => console.error(message, meta),
};

/** Every Google setting pointed at the fake, so no test process ever calls the real Google. */
export function fakeGoogleEnvironment(google: FakeGoogle): Record<string, string> {
  return {
    GOOGLE_CLIENT_ID: GOOGLE_TEST_CLIENT.clientId,
    GOOGLE_CLIENT_SECRET: GOOGLE_TEST_CLIENT.clientSecret,
    GOOGLE_AUTHORIZE_URL: google.authorizeUrl,
    GOOGLE_TOKEN_URL: google.tokenUrl,
    GOOGLE_REVOKE_URL: google.revokeUrl,
    GOOGLE_CALENDAR_API_URL: google.calendarApiUrl,
    GOOGLE_RISC_JWKS_URL: google.riscJwksUrl,
  };
}

/**
 * The whole platform as production wires it (real Postgres, real Temporal, the api-server over HTTP
 * and a worker), pointed at the given fake Google. `clock` is what activities believe the time is.
 */
export async function startTestPlatform(options: {
  temporal: TestWorkflowEnvironment;
  /** Without it Google is not configured; other providers' fakes come in through `environment`. */
  google?: FakeGoogle;
  clock?: () => Date;
  /**
   * What the api-server (token lifetimes, expiry checks) and the voice platforms' clients take now to
   * be; real time unless given. Lifecycle tests hand in the simulated clock the fakes use.
   */
  serverClock?: () => Date;
  /** More activity interceptors for the worker (e.g. one that loses an activity's answer once). */
  activityInterceptors?: ActivityInterceptorsFactory[];
  environment?: Record<string, string>;
  /** False when the test runs the worker itself (e.g. as the production worker process). */
  worker?: boolean;
  /** Where the api-server writes its log lines (with LOG_LEVEL in `environment`; tests are silent otherwise). */
  logDestination?: DestinationStream;
  /** How the Alexa skill endpoint checks requests (tests sign them with their own certificate authority). */
  alexaRequestVerifier?: AlexaRequestVerifier;
  /** The PostgreSQL cluster to create the platform's database on; the test run's shared one unless given. */
  databaseServerUrl?: string;
}): Promise<TestPlatform> {
  const database = await createTestDatabase(options.databaseServerUrl ?? inject('databaseUrl'));
  const port = await freePort();
  const config = loadConfig({
    APP_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATABASE_URL: database.url,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
    TEMPORAL_TASK_QUEUE: `test-${port}`,
    INTEGRATION_ENCRYPTION_KEY: generateEncryptionKey(),
    TEMPORAL_PAYLOAD_KEY: generateEncryptionKey(),
    ...(options.google ? fakeGoogleEnvironment(options.google) : {}),
    ...options.environment,
  });
  const services = await createPlatformServices(config, options.serverClock ? { clock: options.serverClock } : {});
  const sso = createSsoSessionSync(config, services);
  await migrate(database.url);
  const payloadCodec = createPayloadCodec(config.payloadEncryption);
  const clientOptions: ClientOptions = {
    connection: options.temporal.connection,
    namespace: config.temporal.namespace,
    dataConverter: { payloadCodecs: [payloadCodec] },
  };
  const client = options.temporal.supportsTimeSkipping ? new CodecAwareTimeSkippingClient(clientOptions) : new Client(clientOptions);

  const worker: Worker | undefined = options.worker === false ? undefined : await createConnectionWorker({
    connection: options.temporal.nativeConnection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    dependencies: { ...services, sso, clock: options.clock ?? (() => new Date()) },
    payloadCodec,
    sizing: workerSizing(config),
    workflowBundle: await workflowBundle(),
    interceptors: {
      activity: [
        ...timeSkippingLock(options.temporal),
        ...(options.activityInterceptors ?? []),
      ],
    },
  });
  const workerRun = worker?.run();

  const api = await buildApiServer(
    {
      ...services,
      config,
      temporal: client,
      ...(options.serverClock ? { clock: options.serverClock } : {}),
      ...(options.alexaRequestVerifier ? { alexaRequestVerifier: options.alexaRequestVerifier } : {}),
    },
    options.logDestination ? { logDestination: options.logDestination } : {},
  );
  await api.listen({ host: '127.0.0.1', port });

  return {
    ...services,
    sso,
    config,
    api,
    apiUrl: config.http.publicBaseUrl,
    temporal: options.temporal,
    payloadCodec,
    client,
    async signUp(email) {
      const user = await createUser(services.db, { email, displayName: email.split('@')[0]!, password: TEST_PASSWORD });
      const response = await fetch(`${config.http.publicBaseUrl}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password: TEST_PASSWORD }),
      });
      if (response.status !== 200) throw new Error(`login failed: ${response.status} ${await response.text()}`);
      const { sessionToken } = (await response.json()) as { sessionToken: string };
      return { userId: user.id, sessionToken };
    },
    async close() {
      await api.close();
      worker?.shutdown();
      await workerRun;
      await services.db.end();
      await database.drop();
    },
  };
}

/**
 * What a browser does: follow our redirect to (fake) Google, which approves at once and redirects back
 * to our callback with the code and state. Returns the callback's answer.
 */
export async function connectGoogleCalendar(platform: TestPlatform, sessionToken: string) {
  const auth = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/auth`, {
    headers: { authorization: `Bearer ${sessionToken}` },
    redirect: 'manual',
  });
  if (auth.status !== 302) throw new Error(`auth answered ${auth.status}: ${await auth.text()}`);
  const authorizeUrl = new URL(auth.headers.get('location')!);
  const codeVerifier = await readCodeVerifier(platform, authorizeUrl.searchParams.get('state')!);
  const consent = await fetch(authorizeUrl, { redirect: 'manual' });
  if (consent.status !== 302) throw new Error(`fake Google answered ${consent.status}: ${await consent.text()}`);
  const callbackUrl = consent.headers.get('location')!;
  const callback = await fetch(callbackUrl, { headers: { authorization: `Bearer ${sessionToken}` } });
  return { callbackUrl, codeVerifier, status: callback.status, body: (await callback.json()) as Record<string, string> };
}

async function readCodeVerifier(platform: TestPlatform, state: string): Promise<string> {
  const row = await platform.db.one(sql.type(z.object({ id: z.string(), codeVerifierEnc: z.string() }))`
    SELECT id, code_verifier_enc AS "codeVerifierEnc" FROM integration_authorizations WHERE state_hash = ${hashBearerValue(state)}`);
  return platform.crypto.decrypt(row.codeVerifierEnc, { table: 'integration_authorizations', column: 'code_verifier_enc', rowId: row.id });
}

/** Polls the workflow's status query until `predicate` holds (real time; fine for short waits). */
export async function waitForConnectionState(
  platform: TestPlatform,
  workflowId: string,
  predicate: (state: ConnectionState) => boolean,
  timeoutMs = 30_000,
): Promise<ConnectionState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await platform.client.workflow.getHandle(workflowId).query(statusQuery);
    if (predicate(state)) return state;
    if (Date.now() > deadline) throw new Error(`connection state never matched: ${JSON.stringify(state)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

