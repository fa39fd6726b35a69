import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../platform/config';
import { generateEncryptionKey } from '../../platform/integration-crypto';
import { createIntegrationCrypto } from '../../platform/services';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const MINIMAL_PRODUCTION = {
  APP_ENV: 'production',
  DATABASE_URL: 'postgresql://app@db.internal:5432/app',
  PUBLIC_BASE_URL: 'https://pm.example.com/',
  INTEGRATION_ENCRYPTION_KEY: `k2024:${generateEncryptionKey()}`,
  TEMPORAL_PAYLOAD_KEY: `p2024:${generateEncryptionKey()}`,
} satisfies NodeJS.ProcessEnv;

/** Runs loadConfig and returns the ConfigError it throws (failing the test when it does not). */
function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  it('accepts a minimal production environment and applies the documented defaults', () => {
    const config = loadConfig({ ...MINIMAL_PRODUCTION });
    expect(config.appEnv).toBe('production');
    expect(config.logLevel).toBe('info');
    expect(config.databaseUrl).toBe(MINIMAL_PRODUCTION.DATABASE_URL);
    expect(config.databaseConnectionTimeoutMs).toBe(2000);
    expect(config.temporal).toEqual({ address: 'localhost:7233', namespace: 'default', taskQueue: 'oauth-integrations' });
    expect(config.http).toEqual({
      host: '0.0.0.0',
      port: 3000,
      // The trailing slash is removed.
      publicBaseUrl: 'https://pm.example.com',
      // Secure cookies by default in production.
      secureCookies: true,
      trustProxy: false,
    });
    expect(config.workerHealthPort).toBe(3001);
    expect(config.encryption).toEqual({ activeKey: MINIMAL_PRODUCTION.INTEGRATION_ENCRYPTION_KEY, previousKeys: [] });
    expect(config.payloadEncryption).toEqual({ activeKey: MINIMAL_PRODUCTION.TEMPORAL_PAYLOAD_KEY, previousKeys: [] });
    expect(config.codecServer).toEqual({ host: '0.0.0.0', port: 8234, corsOrigin: 'http://localhost:8233', token: undefined });
    expect(config.google).toEqual({
      credentials: undefined,
      authorizeUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
      tokenUrl: 'https://oauth2.googleapis.com/token',
      revokeUrl: 'https://oauth2.googleapis.com/revoke',
      scopes: ['openid', 'https://www.googleapis.com/auth/userinfo.email', 'https://www.googleapis.com/auth/calendar.readonly'],
      calendarApiUrl: 'https://www.googleapis.com/calendar/v3',
      syncIntervalSeconds: 6 * 3600,
      channelTtlSeconds: 7 * 24 * 3600,
      requestTimeoutMs: 15_000,
      risc: { issuer: 'https://accounts.google.com/', jwksUrl: 'https://www.googleapis.com/oauth2/v3/certs', maxTokenAgeSeconds: 24 * 3600 },
    });
    expect(config.microsoft.credentials).toBeUndefined();
    expect(config.airbnb.credentials).toBeUndefined();
    expect(config.tokenRefresh).toEqual({ marginSeconds: 300, jitterSeconds: 60, marginFraction: 0.2, minMarginSeconds: 60, triesBeforeExpiry: 6 });
    expect(config.upstreamRevocationWindowSeconds).toBe(2 * 3600);
    expect(config.authorizationServer).toEqual({
      issuer: 'https://pm.example.com',
      internalUrl: 'https://pm.example.com',
      audience: 'https://pm.example.com',
      adminApiToken: undefined,
      initialAccessToken: undefined,
      signingKeyGraceSeconds: 24 * 3600,
      tokenRequestsPerMinute: 300,
      loginMaxFailures: 5,
      loginLockoutSeconds: 15 * 60,
    });
    expect(config.lifetimes).toEqual({
      oauthStateSeconds: 600,
      sessionSeconds: 12 * 3600,
      accessTokenSeconds: 15 * 60,
      refreshTokenSeconds: 7 * 24 * 3600,
      deviceRefreshTokenSeconds: 365 * 24 * 3600,
      authorizationCodeSeconds: 60,
    });
  });

  it('defaults APP_ENV to production', () => {
    const withoutAppEnv: NodeJS.ProcessEnv = { ...MINIMAL_PRODUCTION };
    delete withoutAppEnv.APP_ENV;
    expect(loadConfig(withoutAppEnv).appEnv).toBe('production');
    expect(configError({}).message).toContain('DATABASE_URL');
  });

  it('needs nothing in development, where cookies are not secure by default', () => {
    const config = loadConfig({ APP_ENV: 'development' });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.encryption.activeKey).toBeUndefined();
    expect(config.http.publicBaseUrl).toBe('http://localhost:3000');
    expect(config.http.secureCookies).toBe(false);
  });

  it('parses the optional values it is given', () => {
    const config = loadConfig({
      ...MINIMAL_PRODUCTION,
      API_PORT: '8080',
      TEMPORAL_ADDRESS: 'temporal:7233',
      SESSION_COOKIE_SECURE: 'false',
      INTEGRATION_ENCRYPTION_PREVIOUS_KEYS: ` old1:${generateEncryptionKey()} , old2:${generateEncryptionKey()},`,
      GOOGLE_CLIENT_ID: 'id',
      GOOGLE_CLIENT_SECRET: 'secret',
      GOOGLE_CALENDAR_SCOPES: 'a b,c',
    });
    expect(config.http.port).toBe(8080);
    expect(config.temporal.address).toBe('temporal:7233');
    expect(config.http.secureCookies).toBe(false);
    expect(config.encryption.previousKeys).toHaveLength(2);
    expect(config.encryption.previousKeys.every((key) => /^old\d:/.test(key))).toBe(true);
    expect(config.google.credentials).toEqual({ clientId: 'id', clientSecret: 'secret' });
    expect(config.google.scopes).toEqual(['a', 'b', 'c']);
  });

  it('takes the access-token audience from OAUTH_ACCESS_TOKEN_AUDIENCE, defaulting to the issuer', () => {
    expect(loadConfig({ ...MINIMAL_PRODUCTION, OAUTH_ACCESS_TOKEN_AUDIENCE: 'https://api.example.com' }).authorizationServer.audience).toBe(
      'https://api.example.com',
    );
    expect(loadConfig({ ...MINIMAL_PRODUCTION, OAUTH_ISSUER: 'https://id.example.com' }).authorizationServer.audience).toBe('https://id.example.com');
  });

  it('names both refresh margins when the least exceeds the most', () => {
    expect(configError({ ...MINIMAL_PRODUCTION, TOKEN_REFRESH_MIN_MARGIN_SECONDS: '301' }).problems).toContain(
      'TOKEN_REFRESH_MIN_MARGIN_SECONDS: must not exceed TOKEN_REFRESH_MARGIN_SECONDS',
    );
  });

  it('starts with a margin lowered below the default least margin, which then follows it', () => {
    const config = loadConfig({ ...MINIMAL_PRODUCTION, TOKEN_REFRESH_MARGIN_SECONDS: '30', TOKEN_REFRESH_JITTER_SECONDS: '10' });
    expect(config.tokenRefresh).toMatchObject({ marginSeconds: 30, jitterSeconds: 10, minMarginSeconds: 30 });
  });

  it('takes the upstream revocation window from UPSTREAM_REVOCATION_WINDOW_SECONDS', () => {
    expect(loadConfig({ ...MINIMAL_PRODUCTION, UPSTREAM_REVOCATION_WINDOW_SECONDS: '600' }).upstreamRevocationWindowSeconds).toBe(600);
  });

  it('accepts a grace period equal to the access-token lifetime', () => {
    expect(loadConfig({ ...MINIMAL_PRODUCTION, OAUTH_SIGNING_KEY_GRACE_SECONDS: '900', ACCESS_TOKEN_TTL_SECONDS: '900' }).authorizationServer.signingKeyGraceSeconds).toBe(900);
  });

  it.each([
    ['DATABASE_URL is missing in production', { DATABASE_URL: undefined }, 'DATABASE_URL'],
    ['PUBLIC_BASE_URL is missing in production', { PUBLIC_BASE_URL: undefined }, 'PUBLIC_BASE_URL'],
    ['INTEGRATION_ENCRYPTION_KEY is missing in production', { INTEGRATION_ENCRYPTION_KEY: undefined }, 'INTEGRATION_ENCRYPTION_KEY'],
    ['TEMPORAL_PAYLOAD_KEY is missing in production', { TEMPORAL_PAYLOAD_KEY: undefined }, 'TEMPORAL_PAYLOAD_KEY'],
    ['CODEC_SERVER_TOKEN is shorter than 32 characters', { CODEC_SERVER_TOKEN: 'short' }, 'CODEC_SERVER_TOKEN'],
    ['CODEC_SERVER_CORS_ORIGIN is not a URL', { CODEC_SERVER_CORS_ORIGIN: 'localhost' }, 'CODEC_SERVER_CORS_ORIGIN'],
    ['API_PORT is not a number', { API_PORT: 'abc' }, 'API_PORT'],
    ['API_PORT is out of range', { API_PORT: '70000' }, 'API_PORT'],
    ['TEMPORAL_ADDRESS has no port', { TEMPORAL_ADDRESS: 'temporal' }, 'TEMPORAL_ADDRESS'],
    ['GOOGLE_CLIENT_ID comes without GOOGLE_CLIENT_SECRET', { GOOGLE_CLIENT_ID: 'id' }, 'GOOGLE_CLIENT_SECRET'],
    ['GOOGLE_CLIENT_SECRET comes without GOOGLE_CLIENT_ID', { GOOGLE_CLIENT_SECRET: 'secret' }, 'GOOGLE_CLIENT_ID'],
    ['GOOGLE_TOKEN_URL is not a URL', { GOOGLE_TOKEN_URL: 'not a url' }, 'GOOGLE_TOKEN_URL'],
    ['APP_ENV is unknown', { APP_ENV: 'staging' }, 'APP_ENV'],
    ['TOKEN_REFRESH_JITTER_SECONDS equals the margin', { TOKEN_REFRESH_JITTER_SECONDS: '300' }, 'TOKEN_REFRESH_JITTER_SECONDS'],
    ['TOKEN_REFRESH_JITTER_SECONDS exceeds the margin', { TOKEN_REFRESH_MARGIN_SECONDS: '30', TOKEN_REFRESH_JITTER_SECONDS: '31' }, 'TOKEN_REFRESH_JITTER_SECONDS'],
    ['TOKEN_REFRESH_MIN_MARGIN_SECONDS exceeds the margin', { TOKEN_REFRESH_MIN_MARGIN_SECONDS: '301' }, 'TOKEN_REFRESH_MIN_MARGIN_SECONDS'],
    ['TOKEN_REFRESH_MIN_MARGIN_SECONDS exceeds a lowered margin', { TOKEN_REFRESH_MARGIN_SECONDS: '30', TOKEN_REFRESH_JITTER_SECONDS: '10', TOKEN_REFRESH_MIN_MARGIN_SECONDS: '60' }, 'TOKEN_REFRESH_MIN_MARGIN_SECONDS'],
    ['UPSTREAM_REVOCATION_WINDOW_SECONDS is below a minute', { UPSTREAM_REVOCATION_WINDOW_SECONDS: '30' }, 'UPSTREAM_REVOCATION_WINDOW_SECONDS'],
    ['UPSTREAM_REVOCATION_WINDOW_SECONDS exceeds a day', { UPSTREAM_REVOCATION_WINDOW_SECONDS: '86401' }, 'UPSTREAM_REVOCATION_WINDOW_SECONDS'],
    ['TOKEN_REFRESH_MARGIN_FRACTION is more than half', { TOKEN_REFRESH_MARGIN_FRACTION: '0.6' }, 'TOKEN_REFRESH_MARGIN_FRACTION'],
    ['TOKEN_REFRESH_TRIES_BEFORE_EXPIRY is below two', { TOKEN_REFRESH_TRIES_BEFORE_EXPIRY: '1' }, 'TOKEN_REFRESH_TRIES_BEFORE_EXPIRY'],
    ['SESSION_COOKIE_SECURE is not a flag', { SESSION_COOKIE_SECURE: 'yes' }, 'SESSION_COOKIE_SECURE'],
    [
      'OAUTH_SIGNING_KEY_GRACE_SECONDS is shorter than the access-token lifetime',
      { OAUTH_SIGNING_KEY_GRACE_SECONDS: '600', ACCESS_TOKEN_TTL_SECONDS: '900' },
      'OAUTH_SIGNING_KEY_GRACE_SECONDS',
    ],
    // A repeated answer hands out the successor's access token: it must outlive the grace.
    ['VOICE_REFRESH_GRACE_SECONDS reaches the access-token lifetime', { VOICE_REFRESH_GRACE_SECONDS: '900', ACCESS_TOKEN_TTL_SECONDS: '900' }, 'VOICE_REFRESH_GRACE_SECONDS'],
    // The replay guards and authorization records a security event is checked against are kept a day.
    ['GOOGLE_RISC_MAX_TOKEN_AGE_SECONDS exceeds a day', { GOOGLE_RISC_MAX_TOKEN_AGE_SECONDS: '86401' }, 'GOOGLE_RISC_MAX_TOKEN_AGE_SECONDS'],
    ['OAUTH_TOKEN_REQUESTS_PER_MINUTE is not a positive number', { OAUTH_TOKEN_REQUESTS_PER_MINUTE: '0' }, 'OAUTH_TOKEN_REQUESTS_PER_MINUTE'],
  ] as const)('stops with a ConfigError naming the variable when %s', (_label, overrides, variable) => {
    const env: NodeJS.ProcessEnv = { ...MINIMAL_PRODUCTION, ...overrides };
    const error = configError(env);
    expect(error.message).toContain(variable);
    expect(error.problems.some((problem) => problem.startsWith(`${variable}:`))).toBe(true);
  });

  it('names every bad variable in one error', () => {
    const error = configError({
      ...MINIMAL_PRODUCTION,
      API_PORT: '70000',
      TEMPORAL_ADDRESS: 'temporal',
      SESSION_COOKIE_SECURE: 'yes',
      LOG_LEVEL: 'loud',
    });
    for (const variable of ['API_PORT', 'TEMPORAL_ADDRESS', 'SESSION_COOKIE_SECURE', 'LOG_LEVEL']) {
      expect(error.message).toContain(variable);
    }
    expect(error.problems).toHaveLength(4);
  });

  it('names every missing production variable and every incomplete credential pair in one error', () => {
    const error = configError({ APP_ENV: 'production', GOOGLE_CLIENT_ID: 'id', MICROSOFT_CLIENT_SECRET: 'secret' });
    for (const variable of ['DATABASE_URL', 'PUBLIC_BASE_URL', 'INTEGRATION_ENCRYPTION_KEY', 'GOOGLE_CLIENT_SECRET', 'MICROSOFT_CLIENT_ID']) {
      expect(error.message).toContain(variable);
    }
  });

  it('names a malformed variable and a missing required one together', () => {
    // A deployment with a typo and a forgotten variable must learn about both at once.
    const error = configError({ APP_ENV: 'production', API_PORT: 'abc' });
    expect(error.message).toContain('API_PORT');
    expect(error.message).toContain('DATABASE_URL');
  });

  it('treats empty strings as unset', () => {
    const config = loadConfig({ ...MINIMAL_PRODUCTION, API_PORT: '', TEMPORAL_ADDRESS: '', GOOGLE_CLIENT_ID: '', SESSION_COOKIE_SECURE: '' });
    expect(config.http.port).toBe(3000);
    expect(config.temporal.address).toBe('localhost:7233');
    expect(config.google.credentials).toBeUndefined();
    expect(config.http.secureCookies).toBe(true);
    const error = configError({ ...MINIMAL_PRODUCTION, DATABASE_URL: '' });
    expect(error.message).toContain('DATABASE_URL');
  });
});

describe('createIntegrationCrypto', () => {
  it('builds the crypto from a valid key', () => {
    const crypto = createIntegrationCrypto(loadConfig({ ...MINIMAL_PRODUCTION }));
    expect(crypto.activeKeyId).toBe('k2024');
  });

  it.each([
    ['too short', Buffer.alloc(16).toString('base64')],
    ['not base64', 'not-a-key'],
    ['a bad key id', `bad id:${generateEncryptionKey()}`],
  ])('stops with a ConfigError naming INTEGRATION_ENCRYPTION_KEY when the key is %s', (_label, key) => {
    const config = loadConfig({ ...MINIMAL_PRODUCTION, INTEGRATION_ENCRYPTION_KEY: key });
    expect(() => createIntegrationCrypto(config)).toThrow(ConfigError);
    expect(() => createIntegrationCrypto(config)).toThrow(/INTEGRATION_ENCRYPTION_KEY/);
  });

  it('names INTEGRATION_ENCRYPTION_PREVIOUS_KEYS when a previous key is malformed', () => {
    const config = loadConfig({ ...MINIMAL_PRODUCTION, INTEGRATION_ENCRYPTION_PREVIOUS_KEYS: 'old:short' });
    expect(() => createIntegrationCrypto(config)).toThrow(/INTEGRATION_ENCRYPTION_PREVIOUS_KEYS/);
  });

  it('stops with a ConfigError when there is no key at all', () => {
    const config = loadConfig({ APP_ENV: 'development' });
    expect(() => createIntegrationCrypto(config)).toThrow(/INTEGRATION_ENCRYPTION_KEY/);
  });
});

describe('a real process with a bad configuration', () => {
  it(
    'api/main.ts exits with code 2 and names the bad variables on stderr',
    async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'api/main.ts'], {
        cwd: repoRoot,
        env: { PATH: process.env.PATH ?? '', APP_ENV: 'production', API_PORT: 'abc' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      child.stdout.resume();
      const code = await new Promise<number | null>((resolve, reject) => {
        child.once('error', reject);
        child.once('exit', (exitCode) => resolve(exitCode));
      });
      expect(stderr).toContain('API_PORT');
      expect(stderr).toContain('DATABASE_URL');
      expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(code).toBe(2);
    },
    30_000,
  );
});

describe('token lease and database pool settings', () => {
  it('defaults: a 15 s lease renewed every 2 s, a pool of 20 and 10 activities at once', () => {
    const config = loadConfig(MINIMAL_PRODUCTION);
    expect(config.tokenLease).toEqual({ ttlSeconds: 15, heartbeatIntervalMs: 2000 });
    expect([config.databasePoolSize, config.workerMaxConcurrentActivities]).toEqual([20, 10]);
  });

  it.each([
    ['a heartbeat interval above a third of the heartbeat timeout', { TOKEN_LEASE_HEARTBEAT_INTERVAL_MS: '3334' }, 'TOKEN_LEASE_HEARTBEAT_INTERVAL_MS'],
    ['a lease no longer than the heartbeat timeout', { TOKEN_LEASE_TTL_SECONDS: '10' }, 'TOKEN_LEASE_TTL_SECONDS'],
    ['a heartbeat interval under 100 ms', { TOKEN_LEASE_HEARTBEAT_INTERVAL_MS: '50' }, 'TOKEN_LEASE_HEARTBEAT_INTERVAL_MS'],
    ['a lease of no time', { TOKEN_LEASE_TTL_SECONDS: '0' }, 'TOKEN_LEASE_TTL_SECONDS'],
    ['a pool of one connection', { DATABASE_POOL_SIZE: '1' }, 'DATABASE_POOL_SIZE'],
  ] as const)('stops naming the variable for %s', (_label, overrides, variable) => {
    expect(configError({ ...MINIMAL_PRODUCTION, ...overrides }).problems).toEqual([expect.stringMatching(new RegExp(`^${variable}:`))]);
  });
});

describe('provider request timeout', () => {
  const timeouts = (config: ReturnType<typeof loadConfig>) => [
    config.google.requestTimeoutMs,
    config.microsoft.requestTimeoutMs,
    config.airbnb.requestTimeoutMs,
    config.booking.requestTimeoutMs,
    config.voice.requestTimeoutMs,
  ];

  it('gives every provider and voice platform 15 s per request unless PROVIDER_REQUEST_TIMEOUT_MS says otherwise', () => {
    expect(timeouts(loadConfig(MINIMAL_PRODUCTION))).toEqual(Array(5).fill(15_000));
    expect(timeouts(loadConfig({ ...MINIMAL_PRODUCTION, PROVIDER_REQUEST_TIMEOUT_MS: '4000' }))).toEqual(Array(5).fill(4000));
  });

  it.each(['999', '120001', '1000.5', 'soon'])('stops naming PROVIDER_REQUEST_TIMEOUT_MS for %s', (value) => {
    expect(configError({ ...MINIMAL_PRODUCTION, PROVIDER_REQUEST_TIMEOUT_MS: value }).problems).toEqual([expect.stringMatching(/^PROVIDER_REQUEST_TIMEOUT_MS:/)]);
  });
});
