import { z } from 'zod';
import { TOKEN_WRITE_HEARTBEAT_TIMEOUT_MS } from './token-write-timeouts';

/** The SDK's own default for the polls, kept when the workflow task slots allow it. */
const DEFAULT_WORKFLOW_TASK_POLLS = 10;

/**
 * Every environment variable the platform reads, parsed and validated once at start.
 * README.md lists them with the same defaults; keep the two in step.
 */

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const DEFAULT_MIN_REFRESH_MARGIN_SECONDS = 60;
/** TOKEN_LEASE_TTL_SECONDS and TOKEN_LEASE_HEARTBEAT_INTERVAL_MS when unset. */
const TOKEN_LEASE_DEFAULTS = { ttlSeconds: 15, heartbeatIntervalMs: 2000 } as const;
const seconds = (fallback: number) => z.coerce.number().int().positive().default(fallback);
const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);
const httpUrl = z
  .string()
  .refine((value) => URL.canParse(value) && /^https?:$/.test(new URL(value).protocol), 'must be an http(s) URL')
  .transform((value) => value.replace(/\/+$/, ''));
const flag = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');

const environmentSchema = z.object({
  APP_ENV: z.enum(['development', 'test', 'production']).default('production'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
  DATABASE_CONNECTION_TIMEOUT_MS: z.coerce.number().int().positive().default(2000),
  DATABASE_STATEMENT_TIMEOUT_MS: z.coerce.number().int().positive().default(3000),
  DATABASE_LOCK_TIMEOUT_MS: z.coerce.number().int().positive().default(2000),
  // Two at least: the worker runs half as many activities at once (see workerMaxConcurrentActivities).
  DATABASE_POOL_SIZE: z.coerce.number().int().min(2).max(1000).default(20),

  TEMPORAL_ADDRESS: z.string().regex(/^[^\s:]+:\d+$/, 'must be host:port').default('localhost:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('oauth-integrations'),

  API_HOST: z.string().min(1).default('0.0.0.0'),
  API_PORT: port(3000),
  WORKER_HEALTH_PORT: port(3001),
  WORKER_SHUTDOWN_GRACE_SECONDS: z.coerce.number().int().min(0).default(30),
  // Unset: the SDK's default, sized from the heap (about 600 workflows per GB above 200 MB).
  WORKER_MAX_CACHED_WORKFLOWS: z.coerce.number().int().min(0).optional(),
  WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: z.coerce.number().int().min(2).max(1000).default(40),
  // Unset: the SDK's default, 10 or the workflow task slots if fewer.
  WORKER_MAX_WORKFLOW_TASK_POLLS: z.coerce.number().int().min(2).max(1000).optional(),
  WORKER_NON_STICKY_POLL_RATIO: z.coerce.number().gt(0).max(1).default(0.2),
  WORKER_WORKFLOW_BUNDLE: z.string().min(1).optional(),
  REALITY_HOST: z.string().min(1).default('0.0.0.0'),
  REALITY_PORT: port(3002),
  REALITY_PUBLIC_URL: httpUrl.optional(),
  REALITY_INTERNAL_URL: httpUrl.optional(),
  REALITY_OIDC_CLIENT_ID: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1 to 64 letters, digits, dots, dashes or underscores').default('reality-portal'),
  REALITY_OIDC_CLIENT_SECRET: z.string().min(32, 'must have at least 32 characters').optional(),
  OPENAPI_ENABLED: flag.optional(),
  PUBLIC_BASE_URL: httpUrl.optional(),
  SESSION_COOKIE_SECURE: flag.optional(),
  TRUST_PROXY: flag.default('false'),

  INTEGRATION_ENCRYPTION_KEY: z.string().min(1).optional(),
  INTEGRATION_ENCRYPTION_PREVIOUS_KEYS: z.string().default(''),
  TEMPORAL_PAYLOAD_KEY: z.string().min(1).optional(),
  TEMPORAL_PAYLOAD_PREVIOUS_KEYS: z.string().default(''),

  CODEC_SERVER_HOST: z.string().min(1).default('0.0.0.0'),
  CODEC_SERVER_PORT: port(8234),
  CODEC_SERVER_CORS_ORIGIN: httpUrl.default('http://localhost:8233'),
  CODEC_SERVER_TOKEN: z.string().min(32, 'must have at least 32 characters').optional(),

  GOOGLE_CLIENT_ID: z.string().min(1).optional(),
  GOOGLE_CLIENT_SECRET: z.string().min(1).optional(),
  GOOGLE_AUTHORIZE_URL: httpUrl.default('https://accounts.google.com/o/oauth2/v2/auth'),
  GOOGLE_TOKEN_URL: httpUrl.default('https://oauth2.googleapis.com/token'),
  GOOGLE_REVOKE_URL: httpUrl.default('https://oauth2.googleapis.com/revoke'),
  // openid: the id_token names the Google account (sub) that RISC security events refer to; Google sends
  // those events only for users who granted email or profile access.
  GOOGLE_CALENDAR_SCOPES: z.string().default('openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/calendar.readonly'),
  GOOGLE_CALENDAR_API_URL: httpUrl.default('https://www.googleapis.com/calendar/v3'),
  GOOGLE_CALENDAR_SYNC_INTERVAL_SECONDS: seconds(6 * 3600),
  GOOGLE_CHANNEL_TTL_SECONDS: seconds(7 * 24 * 3600),
  // Google's RISC configuration names its issuer with the trailing slash, unlike its OpenID Connect issuer.
  GOOGLE_RISC_ISSUER: z.string().min(1).default('https://accounts.google.com/'),
  GOOGLE_RISC_JWKS_URL: httpUrl.default('https://www.googleapis.com/oauth2/v3/certs'),
  // Security event tokens carry no exp; older ones are refused so a captured one cannot be replayed later.
  // At most a day: a replay guard (the jti) and the authorization an event is compared with are kept
  // at least that long (db/queries/housekeeping.ts).
  GOOGLE_RISC_MAX_TOKEN_AGE_SECONDS: z.coerce.number().int().positive().max(24 * 3600).default(24 * 3600),
  MICROSOFT_CLIENT_ID: z.string().min(1).optional(),
  MICROSOFT_CLIENT_SECRET: z.string().min(1).optional(),
  MICROSOFT_AUTHORIZE_URL: httpUrl.default('https://login.microsoftonline.com/common/oauth2/v2.0/authorize'),
  MICROSOFT_TOKEN_URL: httpUrl.default('https://login.microsoftonline.com/common/oauth2/v2.0/token'),
  MICROSOFT_GRAPH_URL: httpUrl.default('https://graph.microsoft.com/v1.0'),
  MICROSOFT_CALENDAR_SCOPES: z.string().default('offline_access Calendars.Read'),
  MICROSOFT_CALENDAR_SYNC_INTERVAL_SECONDS: seconds(6 * 3600),
  MICROSOFT_SUBSCRIPTION_MINUTES: z.coerce.number().int().min(45).max(10080).default(10080),
  AIRBNB_CLIENT_ID: z.string().min(1).optional(),
  AIRBNB_CLIENT_SECRET: z.string().min(1).optional(),
  AIRBNB_AUTHORIZE_URL: httpUrl.default('https://www.airbnb.com/oauth2/auth'),
  AIRBNB_API_URL: httpUrl.default('https://api.airbnb.com'),
  AIRBNB_SCOPES: z.string().default('vr'),
  AIRBNB_WEBHOOK_SECRET: z.string().min(16, 'must have at least 16 characters').optional(),
  AIRBNB_WEBHOOK_SIGNATURE_HEADER: z.string().regex(/^[a-z0-9-]+$/, 'must be a lower-case header name').default('x-airbnb-signature'),
  AIRBNB_WEBHOOK_SIGNATURE_ENCODING: z.enum(['hex', 'base64']).default('hex'),
  AIRBNB_WEBHOOK_TIMESTAMP_HEADER: z.string().regex(/^[a-z0-9-]+$/, 'must be a lower-case header name').default('x-airbnb-timestamp'),
  AIRBNB_WEBHOOK_MAX_AGE_SECONDS: z.coerce.number().int().min(30).max(3600).default(300),
  AIRBNB_RESERVATION_SYNC_INTERVAL_SECONDS: seconds(3600),
  BOOKING_AUTH_URL: httpUrl.default('https://connectivity-authentication.booking.com/token-based-authentication/exchange'),
  BOOKING_XML_URL: httpUrl.default('https://secure-supply-xml.booking.com/hotels/ota'),
  BOOKING_POLL_INTERVAL_SECONDS: seconds(20),
  BOOKING_ACK_PAUSE_MS: z.coerce.number().int().min(0).default(5000),
  // A silent provider fails the call as transient, retried, instead of holding its activity until Temporal
  // gives up on it; an activity's own timeout or cancellation still ends the call sooner.
  PROVIDER_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1000).max(120_000).default(15_000),
  WEBHOOK_BASE_URL: httpUrl.optional(),

  OAUTH_ISSUER: httpUrl.optional(),
  API_INTERNAL_URL: httpUrl.optional(),
  OAUTH_ACCESS_TOKEN_AUDIENCE: z.string().min(1).optional(),
  ADMIN_API_TOKEN: z.string().min(32, 'must have at least 32 characters').optional(),
  OAUTH_INITIAL_ACCESS_TOKEN: z.string().min(32, 'must have at least 32 characters').optional(),
  OAUTH_SIGNING_KEY_GRACE_SECONDS: seconds(24 * 3600),
  OAUTH_TOKEN_REQUESTS_PER_MINUTE: z.coerce.number().int().positive().default(300),
  LOGIN_MAX_FAILURES: z.coerce.number().int().positive().default(5),
  LOGIN_LOCKOUT_SECONDS: seconds(15 * 60),

  TOKEN_REFRESH_MARGIN_SECONDS: seconds(300),
  TOKEN_REFRESH_JITTER_SECONDS: z.coerce.number().int().min(0).default(60),
  TOKEN_REFRESH_MARGIN_FRACTION: z.coerce.number().gt(0).max(0.5).default(0.2),
  // Unset, it is 60 or the margin if that is smaller, so a margin that started before this setting existed still starts.
  TOKEN_REFRESH_MIN_MARGIN_SECONDS: z.coerce.number().int().positive().optional(),
  TOKEN_REFRESH_TRIES_BEFORE_EXPIRY: z.coerce.number().int().min(2).max(50).default(6),
  TOKEN_LEASE_TTL_SECONDS: seconds(TOKEN_LEASE_DEFAULTS.ttlSeconds),
  TOKEN_LEASE_HEARTBEAT_INTERVAL_MS: z.coerce.number().int().min(100).default(TOKEN_LEASE_DEFAULTS.heartbeatIntervalMs),
  // A minute at least, room for a few retries; a day at most: a disconnect waits it out in `disconnecting`, where reconnecting answers 409.
  UPSTREAM_REVOCATION_WINDOW_SECONDS: z.coerce.number().int().min(60).max(24 * 3600).default(2 * 3600),
  OAUTH_STATE_TTL_SECONDS: seconds(600),
  AUTHORIZATION_CODE_LIFETIME_SECONDS: z.coerce.number().int().min(30).max(3600).default(600),
  SESSION_TTL_SECONDS: seconds(12 * 3600),
  SESSION_IDLE_SECONDS: seconds(30 * 60),
  PORTAL_SESSION_TTL_SECONDS: seconds(12 * 3600),
  SSO_TOKEN_TTL_SECONDS: seconds(60),
  SSO_TOKEN_REQUESTS_PER_MINUTE: z.coerce.number().int().positive().default(30),
  ID_TOKEN_TTL_SECONDS: seconds(3600),
  SSO_BACKCHANNEL_LOGOUT_DEADLINE_SECONDS: seconds(3600),
  // Below the 1-minute start-to-close timeout of the workflow's delivery activity (workflows/sso-session-activities.ts).
  SSO_BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS: z.coerce.number().int().positive().max(50).default(10),
  SSO_LOGOUT_TOKEN_TTL_SECONDS: seconds(300),
  PORTAL_API_SERVER_TIMEOUT_MS: z.coerce.number().int().positive().default(5000),
  SSO_TEMPORAL_DEADLINE_MS: z.coerce.number().int().positive().default(2000),
  ACCESS_TOKEN_TTL_SECONDS: seconds(15 * 60),
  REFRESH_TOKEN_TTL_SECONDS: seconds(7 * 24 * 3600),
  DEVICE_REFRESH_TOKEN_TTL_SECONDS: seconds(365 * 24 * 3600),
  AUTHORIZATION_CODE_TTL_SECONDS: seconds(60),

  VOICE_REFRESH_GRACE_SECONDS: seconds(120),
  VOICE_COMMANDS_PER_MINUTE_PER_DEVICE: z.coerce.number().int().positive().default(30),
  VOICE_COMMANDS_PER_MINUTE_PER_USER: z.coerce.number().int().positive().default(60),
  ALEXA_SKILL_ID: z.string().min(1).optional(),
  ALEXA_VENDOR_ID: z.string().regex(/^[A-Za-z0-9]+$/, 'must be letters and digits').optional(),
  ALEXA_LWA_CLIENT_ID: z.string().min(1).optional(),
  ALEXA_LWA_CLIENT_SECRET: z.string().min(1).optional(),
  ALEXA_LWA_TOKEN_URL: httpUrl.default('https://api.amazon.com/auth/o2/token'),
  ALEXA_EVENT_GATEWAY_NA_URL: httpUrl.default('https://api.amazonalexa.com'),
  ALEXA_EVENT_GATEWAY_EU_URL: httpUrl.default('https://api.eu.amazonalexa.com'),
  ALEXA_EVENT_GATEWAY_FE_URL: httpUrl.default('https://api.fe.amazonalexa.com'),
  ALEXA_RELAY_TOKEN: z.string().min(32, 'must have at least 32 characters').optional(),
  GOOGLE_HOME_PROJECT_ID: z.string().regex(/^[a-z0-9-]+$/, 'must be a Google Cloud project id').optional(),
  GOOGLE_HOME_SERVICE_ACCOUNT_KEY: z.string().min(1).optional(),
  GOOGLE_HOME_TOKEN_URL: httpUrl.default('https://oauth2.googleapis.com/token'),
  GOOGLE_HOME_GRAPH_URL: httpUrl.default('https://homegraph.googleapis.com/v1'),
});

type Environment = z.infer<typeof environmentSchema>;

/** Every variable the platform reads; README.md's configuration table must list each one. */
export const CONFIG_VARIABLES = Object.keys(environmentSchema.shape) as Array<keyof Environment>;

export interface OAuthClientCredentials {
  clientId: string;
  clientSecret: string;
}

export interface GoogleSettings {
  credentials: OAuthClientCredentials | undefined;
  authorizeUrl: string;
  tokenUrl: string;
  revokeUrl: string;
  scopes: string[];
  calendarApiUrl: string;
  syncIntervalSeconds: number;
  channelTtlSeconds: number;
  /** How long one request to Google may take (PROVIDER_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: number;
  /** Cross-Account Protection: who signs the security event tokens and where their keys are. */
  risc: { issuer: string; jwksUrl: string; maxTokenAgeSeconds: number };
}

export interface MicrosoftSettings {
  credentials: OAuthClientCredentials | undefined;
  authorizeUrl: string;
  tokenUrl: string;
  graphUrl: string;
  scopes: string[];
  syncIntervalSeconds: number;
  /** Outlook event subscriptions live at most 10080 minutes (7 days). */
  subscriptionMinutes: number;
  /** How long one request to Microsoft may take (PROVIDER_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: number;
}

export interface AirbnbSettings {
  credentials: OAuthClientCredentials | undefined;
  authorizeUrl: string;
  apiUrl: string;
  scopes: string[];
  /** Airbnb's signature scheme is unverified (protocols.md), so header and encoding are configurable. */
  webhook: { secret: string | undefined; signatureHeader: string; signatureEncoding: 'hex' | 'base64'; timestampHeader: string; maxAgeSeconds: number };
  syncIntervalSeconds: number;
  /** How long one request to Airbnb may take (PROVIDER_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: number;
}

export interface BookingSettings {
  authUrl: string;
  xmlUrl: string;
  pollIntervalSeconds: number;
  /** Booking.com asks for a 5 s pause after an acknowledgement before the next poll; tests shorten it. */
  ackPauseMs: number;
  /** How long one request to Booking.com may take (PROVIDER_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: number;
}

/** Voice assistants: Alexa and Google Home link accounts with our authorization server. */
export interface VoiceSettings {
  /** How long a rotated voice refresh token still answers with its successor (until the successor is used). */
  refreshGraceSeconds: number;
  commandsPerMinutePerDevice: number;
  commandsPerMinutePerUser: number;
  /** How long one request to Amazon or Google may take (PROVIDER_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: number;
  alexa: {
    /** Requests to the skill endpoint must name this skill; without it the endpoint answers 503. */
    skillId: string | undefined;
    /** The Alexa redirect URIs (`/api/skill/link/<vendorId>`) are built from it. */
    vendorId: string | undefined;
    /** The skill's Login with Amazon client, for AcceptGrant and the event gateway; both or neither. */
    lwaCredentials: OAuthClientCredentials | undefined;
    lwaTokenUrl: string;
    eventGatewayUrls: { NA: string; EU: string; FE: string };
    /** Bearer credential of the operator's own function that relays smart-home directives to us. */
    relayToken: string | undefined;
  };
  google: {
    projectId: string | undefined;
    /** The Home Graph service account's JSON key (the file's text, or that text base64-encoded). */
    serviceAccountKey: string | undefined;
    tokenUrl: string;
    homeGraphUrl: string;
  };
}

export interface SsoSettings {
  /** The Reality Portal as the api-server's first-party OpenID Connect client. */
  portal: {
    /** Where browsers reach the reality-server (REALITY_PUBLIC_URL; its issuer for logout tokens it sends). */
    publicUrl: string;
    /**
     * Where the worker reaches the reality-server (REALITY_INTERNAL_URL, default publicUrl): a URI under
     * publicUrl (its back-channel logout URI) is posted to at the same path under this one.
     */
    internalUrl: string;
    clientId: string;
    /** Unset: the api-server registers no portal client and the portal offers only its own logins. */
    clientSecret: string | undefined;
    /** How long one request of the portal to the api-server (its key set, OpenID Connect discovery and endpoints) may take; a user waits for it. */
    apiServerTimeoutMs: number;
  };
  /** Lifetime of the one-time SSO token of the PM app's "Open Reality Portal" button. */
  tokenSeconds: number;
  /** SSO tokens one PM user may ask for a minute (the exchange endpoint and the button, each). */
  tokenRequestsPerMinute: number;
  idTokenSeconds: number;
  /** A PM session, and an SSO pair of sessions, unused this long ends (SESSION_IDLE_SECONDS). */
  sessionIdleSeconds: number;
  /** Absolute lifetime of a portal session; an SSO session also ends with the PM session it came from. */
  portalSessionSeconds: number;
  /** How long the SSO session workflow retries a back-channel logout delivery before it gives up. */
  backchannelLogoutDeadlineSeconds: number;
  /** How long one back-channel logout delivery waits for the receiver's answer. */
  backchannelLogoutTimeoutSeconds: number;
  /** Lifetime (`exp`) of the logout tokens we sign, and the most a received one may have aged (its `iat`). */
  logoutTokenSeconds: number;
  /**
   * How long both servers let one start or signal of an SSO session workflow take before they give up
   * on it (logged; every portal request checks the PM session anyway), so a request does not wait on a
   * Temporal server that is down.
   */
  temporalDeadlineMs: number;
}

export interface Config {
  appEnv: Environment['APP_ENV'];
  logLevel: Environment['LOG_LEVEL'];
  databaseUrl: string | undefined;
  /** How long opening a database connection may take before the request fails as a transient fault. */
  databaseConnectionTimeoutMs: number;
  /**
   * How long one statement of the api-server may run, and how long it may wait for a lock, before the
   * request fails as a transient fault (the worker keeps slonik's 60 s and waits for locks).
   */
  databaseStatementTimeoutMs: number;
  databaseLockTimeoutMs: number;
  /** Connections one process's pool opens at most. */
  databasePoolSize: number;
  /**
   * Activities one worker runs at once: half the pool, because an activity that holds a token lease
   * uses a second connection to renew it while its own work holds the first; a renewal that queued
   * behind other activities' work would let the lease lapse under a live holder.
   */
  workerMaxConcurrentActivities: number;
  /**
   * Workflows the worker keeps in memory between their tasks (WORKER_MAX_CACHED_WORKFLOWS; undefined:
   * the SDK sizes it from the heap). One that is evicted is replayed from its history at its next task,
   * which costs the worker and Temporal far more than a cached one's task (bench/RESULTS.md).
   */
  workerMaxCachedWorkflows: number | undefined;
  /** Workflow tasks the worker runs at once (WORKER_MAX_CONCURRENT_WORKFLOW_TASKS). */
  workerMaxConcurrentWorkflowTasks: number;
  /**
   * Polls for workflow tasks the worker keeps open at once (WORKER_MAX_WORKFLOW_TASK_POLLS), and the
   * share of them on the task queue every worker polls (WORKER_NON_STICKY_POLL_RATIO); the others poll
   * the worker's own queue for the workflows it has cached. A workflow evicted from the cache gets its
   * tasks from the shared queue: with a cache smaller than the live connections, most tasks come there,
   * and the default share (0.2: two polls of ten) leaves them waiting (bench/RESULTS.md).
   */
  workerMaxWorkflowTaskPolls: number;
  workerNonStickyPollRatio: number;
  /** The prebuilt workflow bundle (WORKER_WORKFLOW_BUNDLE, `npm run bundle-workflows`); undefined: the worker bundles as it starts. */
  workerWorkflowBundlePath: string | undefined;
  /**
   * How long after the callback a provider's authorization code can still be exchanged
   * (AUTHORIZATION_CODE_LIFETIME_SECONDS): an exchange that cannot start by then fails the connection
   * at once, as the code would be refused anyway.
   */
  authorizationCodeLifetimeSeconds: number;
  temporal: { address: string; namespace: string; taskQueue: string };
  http: { host: string; port: number; publicBaseUrl: string; secureCookies: boolean; trustProxy: boolean };
  workerHealthPort: number;
  /** How long a stopping worker lets running activities finish before it cancels them. */
  workerShutdownGraceSeconds: number;
  realityServer: { host: string; port: number };
  sso: SsoSettings;
  /** Whether the api-server serves its OpenAPI document (OPENAPI_ENABLED; on outside production). */
  openapiEnabled: boolean;
  encryption: { activeKey: string | undefined; previousKeys: string[] };
  /** TEMPORAL_PAYLOAD_KEY: the payload codec's keys, separate from the integration keys. */
  payloadEncryption: { activeKey: string | undefined; previousKeys: string[] };
  codecServer: { host: string; port: number; corsOrigin: string; token: string | undefined };
  google: GoogleSettings;
  microsoft: MicrosoftSettings;
  airbnb: AirbnbSettings;
  booking: BookingSettings;
  /** Where providers deliver webhooks (WEBHOOK_BASE_URL, default PUBLIC_BASE_URL); real providers require https. */
  webhookBaseUrl: string;
  /** When connection tokens are refreshed and how failed refreshes are spaced (workflows/connection-messages.ts, RefreshPolicy). */
  tokenRefresh: { marginSeconds: number; jitterSeconds: number; marginFraction: number; minMarginSeconds: number; triesBeforeExpiry: number };
  /**
   * How long a provider outage is waited out to revoke a grant upstream (a disconnect's, and tokens an
   * exchange will not keep) before the revocation is recorded as failed.
   */
  upstreamRevocationWindowSeconds: number;
  /**
   * The lease on a connection's token writes (activities/token-lease.ts): how long it lives unrenewed,
   * and how often its holder renews it and heartbeats to Temporal.
   */
  tokenLease: { ttlSeconds: number; heartbeatIntervalMs: number };
  authorizationServer: {
    issuer: string;
    /**
     * Where the reality-server and the worker reach the api-server (API_INTERNAL_URL, default the
     * issuer): an endpoint under the issuer is called at the same path under this URL.
     */
    internalUrl: string;
    /** `aud` of our access tokens (OAUTH_ACCESS_TOKEN_AUDIENCE, default the issuer). */
    audience: string;
    adminApiToken: string | undefined;
    initialAccessToken: string | undefined;
    signingKeyGraceSeconds: number;
    /** Token endpoint requests a minute per refresh token or code (else per claimed client and address). */
    tokenRequestsPerMinute: number;
    loginMaxFailures: number;
    loginLockoutSeconds: number;
  };
  voice: VoiceSettings;
  lifetimes: {
    oauthStateSeconds: number;
    sessionSeconds: number;
    accessTokenSeconds: number;
    refreshTokenSeconds: number;
    deviceRefreshTokenSeconds: number;
    authorizationCodeSeconds: number;
  };
}

function scopeList(value: string): string[] {
  return value.split(/[\s,]+/).filter(Boolean);
}

/** Variables that only some processes need: each entry point names what it needs. */
export type ConfigNeed =
  | 'DATABASE_URL'
  | 'INTEGRATION_ENCRYPTION_KEY'
  | 'PUBLIC_BASE_URL'
  | 'TEMPORAL_PAYLOAD_KEY'
  | 'CODEC_SERVER_TOKEN'
  | 'REALITY_PUBLIC_URL'
  | 'REALITY_OIDC_CLIENT_SECRET';
const API_SERVER_NEEDS: ConfigNeed[] = ['DATABASE_URL', 'INTEGRATION_ENCRYPTION_KEY', 'PUBLIC_BASE_URL', 'TEMPORAL_PAYLOAD_KEY'];
// The worker registers webhook URLs with providers, built from PUBLIC_BASE_URL (or WEBHOOK_BASE_URL).
// The SSO session workflow delivers the api-server's logout tokens to the portal (REALITY_PUBLIC_URL).
export const WORKER_NEEDS: ConfigNeed[] = ['DATABASE_URL', 'INTEGRATION_ENCRYPTION_KEY', 'TEMPORAL_PAYLOAD_KEY', 'PUBLIC_BASE_URL', 'REALITY_PUBLIC_URL'];
// The portal signs users in at the api-server (PUBLIC_BASE_URL or OAUTH_ISSUER) as its first-party client.
export const REALITY_SERVER_NEEDS: ConfigNeed[] = ['DATABASE_URL', 'TEMPORAL_PAYLOAD_KEY', 'PUBLIC_BASE_URL', 'REALITY_PUBLIC_URL', 'REALITY_OIDC_CLIENT_SECRET'];
export const CODEC_SERVER_NEEDS: ConfigNeed[] = ['TEMPORAL_PAYLOAD_KEY', 'CODEC_SERVER_TOKEN'];

/**
 * Parses the environment. Throws one ConfigError naming every wrong or missing variable, so a bad
 * deployment stops at start rather than at the first request that needs the value. In production the
 * variables in `needs` must be set; elsewhere `npm run dev` and the tests provide them.
 */
export function loadConfig(source: NodeJS.ProcessEnv = process.env, needs: ConfigNeed[] = API_SERVER_NEEDS): Config {
  const present: Record<string, string> = Object.fromEntries(
    Object.entries(source).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ''),
  );
  const parsed = environmentSchema.safeParse(present);
  const problems = parsed.success ? [] : parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
  if ((present.APP_ENV ?? 'production') === 'production') {
    for (const name of needs) if (!present[name]) problems.push(`${name}: is required in production`);
  }
  for (const provider of ['GOOGLE', 'MICROSOFT', 'AIRBNB', 'ALEXA_LWA']) {
    const [idName, secretName] = [`${provider}_CLIENT_ID`, `${provider}_CLIENT_SECRET`];
    if (Boolean(present[idName]) !== Boolean(present[secretName])) {
      problems.push(`${present[idName] ? secretName : idName}: is required when ${present[idName] ? idName : secretName} is set`);
    }
  }
  if (parsed.success && parsed.data.WORKER_MAX_CACHED_WORKFLOWS === 1) {
    problems.push('WORKER_MAX_CACHED_WORKFLOWS: must be 0 (no cache) or at least 2');
  }
  const cachedWorkflows = parsed.success ? parsed.data.WORKER_MAX_CACHED_WORKFLOWS : undefined;
  if (parsed.success && cachedWorkflows && parsed.data.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS > cachedWorkflows) {
    // A workflow task in progress holds its workflow in the cache.
    problems.push('WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: must not exceed WORKER_MAX_CACHED_WORKFLOWS (unless that is 0)');
  }
  if (parsed.success && (parsed.data.WORKER_MAX_WORKFLOW_TASK_POLLS ?? 0) > parsed.data.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS) {
    // A poll that returns a task needs a free slot to run it.
    problems.push('WORKER_MAX_WORKFLOW_TASK_POLLS: must not exceed WORKER_MAX_CONCURRENT_WORKFLOW_TASKS');
  }
  if (parsed.success && parsed.data.TOKEN_REFRESH_JITTER_SECONDS >= parsed.data.TOKEN_REFRESH_MARGIN_SECONDS) {
    problems.push('TOKEN_REFRESH_JITTER_SECONDS: must be smaller than TOKEN_REFRESH_MARGIN_SECONDS');
  }
  if (parsed.success && (parsed.data.TOKEN_REFRESH_MIN_MARGIN_SECONDS ?? 0) > parsed.data.TOKEN_REFRESH_MARGIN_SECONDS) {
    problems.push('TOKEN_REFRESH_MIN_MARGIN_SECONDS: must not exceed TOKEN_REFRESH_MARGIN_SECONDS');
  }
  if (parsed.success && parsed.data.TOKEN_LEASE_TTL_SECONDS * 1000 <= TOKEN_WRITE_HEARTBEAT_TIMEOUT_MS) {
    // Temporal must give up on a silent attempt before its lease lapses, or two attempts write at once.
    problems.push(`TOKEN_LEASE_TTL_SECONDS: must exceed the token writes' heartbeat timeout (${TOKEN_WRITE_HEARTBEAT_TIMEOUT_MS / 1000} s)`);
  }
  if (parsed.success && parsed.data.TOKEN_LEASE_HEARTBEAT_INTERVAL_MS * 3 > TOKEN_WRITE_HEARTBEAT_TIMEOUT_MS) {
    // Two heartbeats may be late (a busy worker) and the third still reaches Temporal in time; with the
    // lease longer than the timeout, a renewal that fails (a database hiccup) is followed by another in time.
    problems.push(`TOKEN_LEASE_HEARTBEAT_INTERVAL_MS: must be at most a third of the token writes' heartbeat timeout (${TOKEN_WRITE_HEARTBEAT_TIMEOUT_MS} ms)`);
  }
  if (parsed.success && parsed.data.OAUTH_SIGNING_KEY_GRACE_SECONDS < parsed.data.ACCESS_TOKEN_TTL_SECONDS) {
    // A retired key must verify every token it signed until that token expires.
    problems.push('OAUTH_SIGNING_KEY_GRACE_SECONDS: must be at least ACCESS_TOKEN_TTL_SECONDS');
  }
  if (parsed.success && parsed.data.VOICE_REFRESH_GRACE_SECONDS >= parsed.data.ACCESS_TOKEN_TTL_SECONDS) {
    // A repeated answer carries the successor's access token, which must still be alive for the whole grace.
    problems.push('VOICE_REFRESH_GRACE_SECONDS: must be smaller than ACCESS_TOKEN_TTL_SECONDS');
  }
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);
  const env = parsed.data;
  const production = env.APP_ENV === 'production';
  const credentials = (clientId: string | undefined, clientSecret: string | undefined) =>
    clientId && clientSecret ? { clientId, clientSecret } : undefined;
  const google = credentials(env.GOOGLE_CLIENT_ID, env.GOOGLE_CLIENT_SECRET);
  const microsoft = credentials(env.MICROSOFT_CLIENT_ID, env.MICROSOFT_CLIENT_SECRET);
  const airbnb = credentials(env.AIRBNB_CLIENT_ID, env.AIRBNB_CLIENT_SECRET);
  const publicBaseUrl = env.PUBLIC_BASE_URL ?? `http://localhost:${env.API_PORT}`;
  const realityPublicUrl = env.REALITY_PUBLIC_URL ?? `http://127.0.0.1:${env.REALITY_PORT}`;

  return {
    appEnv: env.APP_ENV,
    logLevel: env.LOG_LEVEL,
    databaseUrl: env.DATABASE_URL,
    databaseConnectionTimeoutMs: env.DATABASE_CONNECTION_TIMEOUT_MS,
    databaseStatementTimeoutMs: env.DATABASE_STATEMENT_TIMEOUT_MS,
    databaseLockTimeoutMs: env.DATABASE_LOCK_TIMEOUT_MS,
    databasePoolSize: env.DATABASE_POOL_SIZE,
    workerMaxConcurrentActivities: Math.floor(env.DATABASE_POOL_SIZE / 2),
    workerMaxCachedWorkflows: env.WORKER_MAX_CACHED_WORKFLOWS,
    workerMaxConcurrentWorkflowTasks: env.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS,
    workerMaxWorkflowTaskPolls: env.WORKER_MAX_WORKFLOW_TASK_POLLS ?? Math.min(DEFAULT_WORKFLOW_TASK_POLLS, env.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS),
    workerNonStickyPollRatio: env.WORKER_NON_STICKY_POLL_RATIO,
    workerWorkflowBundlePath: env.WORKER_WORKFLOW_BUNDLE,
    authorizationCodeLifetimeSeconds: env.AUTHORIZATION_CODE_LIFETIME_SECONDS,
    temporal: { address: env.TEMPORAL_ADDRESS, namespace: env.TEMPORAL_NAMESPACE, taskQueue: env.TEMPORAL_TASK_QUEUE },
    http: {
      host: env.API_HOST,
      port: env.API_PORT,
      publicBaseUrl,
      secureCookies: env.SESSION_COOKIE_SECURE ?? production,
      trustProxy: env.TRUST_PROXY,
    },
    workerHealthPort: env.WORKER_HEALTH_PORT,
    workerShutdownGraceSeconds: env.WORKER_SHUTDOWN_GRACE_SECONDS,
    realityServer: { host: env.REALITY_HOST, port: env.REALITY_PORT },
    sso: {
      portal: {
        publicUrl: realityPublicUrl,
        internalUrl: env.REALITY_INTERNAL_URL ?? realityPublicUrl,
        clientId: env.REALITY_OIDC_CLIENT_ID,
        clientSecret: env.REALITY_OIDC_CLIENT_SECRET,
        apiServerTimeoutMs: env.PORTAL_API_SERVER_TIMEOUT_MS,
      },
      tokenSeconds: env.SSO_TOKEN_TTL_SECONDS,
      tokenRequestsPerMinute: env.SSO_TOKEN_REQUESTS_PER_MINUTE,
      idTokenSeconds: env.ID_TOKEN_TTL_SECONDS,
      sessionIdleSeconds: env.SESSION_IDLE_SECONDS,
      portalSessionSeconds: env.PORTAL_SESSION_TTL_SECONDS,
      backchannelLogoutDeadlineSeconds: env.SSO_BACKCHANNEL_LOGOUT_DEADLINE_SECONDS,
      backchannelLogoutTimeoutSeconds: env.SSO_BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS,
      logoutTokenSeconds: env.SSO_LOGOUT_TOKEN_TTL_SECONDS,
      temporalDeadlineMs: env.SSO_TEMPORAL_DEADLINE_MS,
    },
    openapiEnabled: env.OPENAPI_ENABLED ?? !production,
    encryption: {
      activeKey: env.INTEGRATION_ENCRYPTION_KEY,
      previousKeys: env.INTEGRATION_ENCRYPTION_PREVIOUS_KEYS.split(',').map((key) => key.trim()).filter(Boolean),
    },
    payloadEncryption: {
      activeKey: env.TEMPORAL_PAYLOAD_KEY,
      previousKeys: env.TEMPORAL_PAYLOAD_PREVIOUS_KEYS.split(',').map((key) => key.trim()).filter(Boolean),
    },
    codecServer: {
      host: env.CODEC_SERVER_HOST,
      port: env.CODEC_SERVER_PORT,
      corsOrigin: env.CODEC_SERVER_CORS_ORIGIN,
      token: env.CODEC_SERVER_TOKEN,
    },
    google: {
      credentials: google,
      authorizeUrl: env.GOOGLE_AUTHORIZE_URL,
      tokenUrl: env.GOOGLE_TOKEN_URL,
      revokeUrl: env.GOOGLE_REVOKE_URL,
      scopes: scopeList(env.GOOGLE_CALENDAR_SCOPES),
      calendarApiUrl: env.GOOGLE_CALENDAR_API_URL,
      syncIntervalSeconds: env.GOOGLE_CALENDAR_SYNC_INTERVAL_SECONDS,
      channelTtlSeconds: env.GOOGLE_CHANNEL_TTL_SECONDS,
      requestTimeoutMs: env.PROVIDER_REQUEST_TIMEOUT_MS,
      risc: { issuer: env.GOOGLE_RISC_ISSUER, jwksUrl: env.GOOGLE_RISC_JWKS_URL, maxTokenAgeSeconds: env.GOOGLE_RISC_MAX_TOKEN_AGE_SECONDS },
    },
    microsoft: {
      credentials: microsoft,
      authorizeUrl: env.MICROSOFT_AUTHORIZE_URL,
      tokenUrl: env.MICROSOFT_TOKEN_URL,
      graphUrl: env.MICROSOFT_GRAPH_URL,
      scopes: scopeList(env.MICROSOFT_CALENDAR_SCOPES),
      syncIntervalSeconds: env.MICROSOFT_CALENDAR_SYNC_INTERVAL_SECONDS,
      subscriptionMinutes: env.MICROSOFT_SUBSCRIPTION_MINUTES,
      requestTimeoutMs: env.PROVIDER_REQUEST_TIMEOUT_MS,
    },
    airbnb: {
      credentials: airbnb,
      authorizeUrl: env.AIRBNB_AUTHORIZE_URL,
      apiUrl: env.AIRBNB_API_URL,
      scopes: scopeList(env.AIRBNB_SCOPES),
      webhook: {
        secret: env.AIRBNB_WEBHOOK_SECRET,
        signatureHeader: env.AIRBNB_WEBHOOK_SIGNATURE_HEADER,
        signatureEncoding: env.AIRBNB_WEBHOOK_SIGNATURE_ENCODING,
        timestampHeader: env.AIRBNB_WEBHOOK_TIMESTAMP_HEADER,
        maxAgeSeconds: env.AIRBNB_WEBHOOK_MAX_AGE_SECONDS,
      },
      syncIntervalSeconds: env.AIRBNB_RESERVATION_SYNC_INTERVAL_SECONDS,
      requestTimeoutMs: env.PROVIDER_REQUEST_TIMEOUT_MS,
    },
    booking: {
      authUrl: env.BOOKING_AUTH_URL,
      xmlUrl: env.BOOKING_XML_URL,
      pollIntervalSeconds: env.BOOKING_POLL_INTERVAL_SECONDS,
      ackPauseMs: env.BOOKING_ACK_PAUSE_MS,
      requestTimeoutMs: env.PROVIDER_REQUEST_TIMEOUT_MS,
    },
    webhookBaseUrl: env.WEBHOOK_BASE_URL ?? publicBaseUrl,
    tokenRefresh: {
      marginSeconds: env.TOKEN_REFRESH_MARGIN_SECONDS,
      jitterSeconds: env.TOKEN_REFRESH_JITTER_SECONDS,
      marginFraction: env.TOKEN_REFRESH_MARGIN_FRACTION,
      minMarginSeconds: env.TOKEN_REFRESH_MIN_MARGIN_SECONDS ?? Math.min(DEFAULT_MIN_REFRESH_MARGIN_SECONDS, env.TOKEN_REFRESH_MARGIN_SECONDS),
      triesBeforeExpiry: env.TOKEN_REFRESH_TRIES_BEFORE_EXPIRY,
    },
    upstreamRevocationWindowSeconds: env.UPSTREAM_REVOCATION_WINDOW_SECONDS,
    tokenLease: { ttlSeconds: env.TOKEN_LEASE_TTL_SECONDS, heartbeatIntervalMs: env.TOKEN_LEASE_HEARTBEAT_INTERVAL_MS },
    authorizationServer: {
      issuer: env.OAUTH_ISSUER ?? publicBaseUrl,
      internalUrl: env.API_INTERNAL_URL ?? env.OAUTH_ISSUER ?? publicBaseUrl,
      audience: env.OAUTH_ACCESS_TOKEN_AUDIENCE ?? env.OAUTH_ISSUER ?? publicBaseUrl,
      adminApiToken: env.ADMIN_API_TOKEN,
      initialAccessToken: env.OAUTH_INITIAL_ACCESS_TOKEN,
      signingKeyGraceSeconds: env.OAUTH_SIGNING_KEY_GRACE_SECONDS,
      tokenRequestsPerMinute: env.OAUTH_TOKEN_REQUESTS_PER_MINUTE,
      loginMaxFailures: env.LOGIN_MAX_FAILURES,
      loginLockoutSeconds: env.LOGIN_LOCKOUT_SECONDS,
    },
    voice: {
      refreshGraceSeconds: env.VOICE_REFRESH_GRACE_SECONDS,
      commandsPerMinutePerDevice: env.VOICE_COMMANDS_PER_MINUTE_PER_DEVICE,
      commandsPerMinutePerUser: env.VOICE_COMMANDS_PER_MINUTE_PER_USER,
      requestTimeoutMs: env.PROVIDER_REQUEST_TIMEOUT_MS,
      alexa: {
        skillId: env.ALEXA_SKILL_ID,
        vendorId: env.ALEXA_VENDOR_ID,
        lwaCredentials: credentials(env.ALEXA_LWA_CLIENT_ID, env.ALEXA_LWA_CLIENT_SECRET),
        lwaTokenUrl: env.ALEXA_LWA_TOKEN_URL,
        eventGatewayUrls: { NA: env.ALEXA_EVENT_GATEWAY_NA_URL, EU: env.ALEXA_EVENT_GATEWAY_EU_URL, FE: env.ALEXA_EVENT_GATEWAY_FE_URL },
        relayToken: env.ALEXA_RELAY_TOKEN,
      },
      google: {
        projectId: env.GOOGLE_HOME_PROJECT_ID,
        serviceAccountKey: env.GOOGLE_HOME_SERVICE_ACCOUNT_KEY,
        tokenUrl: env.GOOGLE_HOME_TOKEN_URL,
        homeGraphUrl: env.GOOGLE_HOME_GRAPH_URL,
      },
    },
    lifetimes: {
      oauthStateSeconds: env.OAUTH_STATE_TTL_SECONDS,
      sessionSeconds: env.SESSION_TTL_SECONDS,
      accessTokenSeconds: env.ACCESS_TOKEN_TTL_SECONDS,
      refreshTokenSeconds: env.REFRESH_TOKEN_TTL_SECONDS,
      deviceRefreshTokenSeconds: env.DEVICE_REFRESH_TOKEN_TTL_SECONDS,
      authorizationCodeSeconds: env.AUTHORIZATION_CODE_TTL_SECONDS,
    },
  };
}
