import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig, REALITY_SERVER_NEEDS, WORKER_NEEDS } from '../../platform/config';
import { realityPortalClientMetadata } from '../../platform/sso/portal-client';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const composeFile = path.join(repoRoot, 'docker-compose.yml');

interface Service {
  image?: string;
  build?: unknown;
  command?: string | string[];
  ports?: string[];
  environment?: Record<string, string> | string[];
  healthcheck?: { test: string | string[] };
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
}

// `merge: true` resolves the `<<: *app-environment` merge keys the way Compose does.
const compose = parse(readFileSync(composeFile, 'utf8'), { merge: true }) as { services: Record<string, Service> };
const services = compose.services;

function service(name: string): Service {
  const found = services[name];
  if (!found) throw new Error(`service ${name} missing from docker-compose.yml`);
  return found;
}

function environment(name: string): Record<string, string> {
  const env = service(name).environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((entry) => [entry.split('=')[0], entry.split('=').slice(1).join('=')]));
  }
  return env;
}

function healthcheck(name: string): string {
  const test = service(name).healthcheck?.test;
  expect(test, `${name} has a healthcheck`).toBeDefined();
  return Array.isArray(test) ? test.join(' ') : String(test);
}

function commandOf(name: string): string {
  const command = service(name).command;
  return Array.isArray(command) ? command.join(' ') : String(command);
}

/** What the service's process sees: Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?message}` resolved against `shell`. */
function resolvedEnvironment(name: string, shell: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(environment(name)).map(([key, value]) => [
      key,
      String(value).replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_match, variable: string, kind: string | undefined, argument: string) => {
        const set = shell[variable];
        if (set) return set;
        if (kind === '?') throw new Error(`compose refuses to start without ${variable}: ${argument}`);
        return kind === '-' ? argument : '';
      }),
    ]),
  );
}

const REQUIRED_SHELL = {
  INTEGRATION_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64'),
  TEMPORAL_PAYLOAD_KEY: Buffer.alloc(32, 2).toString('base64'),
  CODEC_SERVER_TOKEN: 'c'.repeat(32),
  REALITY_OIDC_CLIENT_SECRET: 's'.repeat(32),
  REALITY_PUBLIC_URL: 'https://portal.example',
};

const composeAvailable = spawnSync('docker', ['compose', 'version'], { stdio: 'ignore', timeout: 20_000 }).status === 0;

describe('docker-compose.yml', () => {
  it('defines every service', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['api-server', 'codec-server', 'migrate', 'postgres', 'reality-server', 'temporal', 'temporal-ui', 'worker'].sort(),
    );
    expect(service('postgres').image).toBe('postgres:16');
    expect(service('temporal').image).toMatch(/^temporalio\/auto-setup:1\.28/);
    expect(service('temporal-ui').image).toMatch(/^temporalio\/ui/);
    for (const name of ['api-server', 'reality-server', 'worker', 'migrate', 'codec-server']) expect(service(name).build).toBeDefined();
  });

  it('publishes the expected ports', () => {
    expect(service('temporal').ports).toContain('7233:7233');
    expect(service('temporal-ui').ports).toContain('8233:8080');
    expect(service('api-server').ports).toContain('3000:3000');
    expect(service('reality-server').ports).toContain('3002:3002');
    expect(service('codec-server').ports).toContain('8234:8234');
  });

  it('runs the right commands', () => {
    expect(commandOf('api-server')).toBe('npm start');
    expect(commandOf('worker')).toBe('npm run worker');
    expect(commandOf('reality-server')).toBe('npm run reality');
    expect(commandOf('migrate')).toBe('npm run migrate');
    expect(commandOf('codec-server')).toBe('npm run codec-server');
  });

  it('has health checks', () => {
    expect(healthcheck('postgres')).toContain('pg_isready');
    expect(healthcheck('temporal')).toMatch(/temporal operator cluster health|tctl/);
    expect(healthcheck('api-server')).toContain('http://127.0.0.1:3000/readyz');
    expect(healthcheck('worker')).toContain('http://127.0.0.1:3001/readyz');
    expect(healthcheck('reality-server')).toContain('http://127.0.0.1:3002/readyz');
    expect(environment('reality-server').REALITY_PORT).toBe('3002');
    expect(environment('worker').WORKER_HEALTH_PORT).toBe('3001');
  });

  it('starts the worker from the workflow bundle the image builds', () => {
    const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
    expect(dockerfile).toContain('RUN npm run bundle-workflows -- dist/workflow-bundle.js');
    expect(environment('worker').WORKER_WORKFLOW_BUNDLE).toBe('/app/dist/workflow-bundle.js');
  });

  it('points Temporal and its UI at the right places', () => {
    const temporal = environment('temporal');
    expect(temporal.DB).toBe('postgres12');
    expect(temporal.DB_PORT).toBe('5432');
    expect(temporal.POSTGRES_SEEDS).toBe('postgres');
    expect(temporal.POSTGRES_USER).toBeTruthy();
    expect(temporal.POSTGRES_PWD).toBeTruthy();
    expect(environment('temporal-ui').TEMPORAL_ADDRESS).toBe('temporal:7233');
  });

  it('runs Temporal with the platform\'s dynamic config: priorities on, and task queues of one partition', () => {
    const mounted = (service('temporal').volumes ?? []).map((volume) => volume.split(':'));
    const [source] = mounted.find(([, target]) => target === `/etc/temporal/${environment('temporal').DYNAMIC_CONFIG_FILE_PATH}`) ?? [];
    expect(source, 'the dynamic config file is mounted where DYNAMIC_CONFIG_FILE_PATH points').toBeDefined();
    const dynamicConfig = parse(readFileSync(path.join(repoRoot, source!), 'utf8')) as Record<string, unknown>;
    expect(dynamicConfig).toEqual({
      'matching.useNewMatcher': [{ value: true }],
      'matching.numTaskqueueReadPartitions': [{ value: 1 }],
      'matching.numTaskqueueWritePartitions': [{ value: 1 }],
    });
  });

  it('orders start-up with depends_on conditions', () => {
    expect(service('temporal').depends_on?.postgres?.condition).toBe('service_healthy');
    expect(service('migrate').depends_on?.postgres?.condition).toBe('service_healthy');
    for (const name of ['api-server', 'reality-server', 'worker']) {
      const dependsOn = service(name).depends_on;
      expect(dependsOn?.postgres?.condition, name).toBe('service_healthy');
      expect(dependsOn?.temporal?.condition, name).toBe('service_healthy');
      expect(dependsOn?.migrate?.condition, name).toBe('service_completed_successfully');
    }
  });

  it('gives the application services their configuration', () => {
    for (const name of ['api-server', 'worker', 'migrate']) {
      const env = environment(name);
      expect(env.APP_ENV, name).toBe('production');
      expect(env.DATABASE_URL, name).toMatch(/^postgres(ql)?:\/\/.*@postgres:5432\//);
      expect(env.TEMPORAL_ADDRESS, name).toBe('temporal:7233');
      expect(env.INTEGRATION_ENCRYPTION_KEY, name).toMatch(/^\$\{INTEGRATION_ENCRYPTION_KEY:\?.+\}$/);
      expect(env.TEMPORAL_PAYLOAD_KEY, name).toMatch(/^\$\{TEMPORAL_PAYLOAD_KEY:\?.+\}$/);
      expect(env.PUBLIC_BASE_URL, name).toBeDefined();
      expect(env.GOOGLE_CLIENT_ID, name).toContain('${GOOGLE_CLIENT_ID');
      expect(env.GOOGLE_CLIENT_SECRET, name).toContain('${GOOGLE_CLIENT_SECRET');
    }
  });

  it('requires the portal\'s public URL (https in production) and gives every service a configuration it starts with', () => {
    for (const name of ['api-server', 'reality-server', 'worker']) {
      expect(environment(name).REALITY_PUBLIC_URL, name).toMatch(/^\$\{REALITY_PUBLIC_URL:\?.*https.*\}$/);
    }
    const shell = { ...REQUIRED_SHELL, PUBLIC_BASE_URL: 'https://pm.example' };
    // The api-server registers the portal's client at start, which refuses a plain-http back-channel logout URI in production.
    const api = loadConfig(resolvedEnvironment('api-server', shell));
    expect(realityPortalClientMetadata(api).backchannelLogoutUri).toBe('https://portal.example/sso/backchannel-logout');
    expect(() => realityPortalClientMetadata(loadConfig(resolvedEnvironment('api-server', { ...shell, REALITY_PUBLIC_URL: 'http://portal.example' })))).toThrow(/https/);
    loadConfig(resolvedEnvironment('reality-server', shell), REALITY_SERVER_NEEDS);
    loadConfig(resolvedEnvironment('worker', shell), WORKER_NEEDS);
  });

  it('has the containers reach each other by service name and port, while browsers and tokens keep the public URLs', () => {
    const shell = { ...REQUIRED_SHELL, PUBLIC_BASE_URL: 'https://pm.example' };
    const reality = loadConfig(resolvedEnvironment('reality-server', shell), REALITY_SERVER_NEEDS);
    const worker = loadConfig(resolvedEnvironment('worker', shell), WORKER_NEEDS);
    for (const config of [reality, worker]) {
      expect(config.authorizationServer.issuer).toBe('https://pm.example');
      expect(config.authorizationServer.internalUrl).toBe('http://api-server:3000');
      expect(config.sso.portal.publicUrl).toBe('https://portal.example');
    }
    expect(worker.sso.portal.internalUrl).toBe('http://reality-server:3002');
    // Each internal URL names a service, at the port that service listens on.
    expect(environment('api-server').API_PORT).toBe('3000');
    expect(environment('reality-server').REALITY_PORT).toBe('3002');
    for (const url of [reality.authorizationServer.internalUrl, worker.authorizationServer.internalUrl, worker.sso.portal.internalUrl]) {
      expect(Object.keys(services)).toContain(new URL(url).hostname);
    }
  });

  it('runs the codec server with the payload key and a required operator token, and nothing else secret', () => {
    const env = environment('codec-server');
    expect(env.APP_ENV).toBe('production');
    expect(env.TEMPORAL_PAYLOAD_KEY).toMatch(/^\$\{TEMPORAL_PAYLOAD_KEY:\?.+\}$/);
    expect(env.CODEC_SERVER_TOKEN).toMatch(/^\$\{CODEC_SERVER_TOKEN:\?.+\}$/);
    expect(env.CODEC_SERVER_PORT).toBe('8234');
    expect(env.CODEC_SERVER_CORS_ORIGIN).toContain('http://localhost:8233');
    for (const secret of ['INTEGRATION_ENCRYPTION_KEY', 'DATABASE_URL', 'GOOGLE_CLIENT_SECRET']) expect(env[secret]).toBeUndefined();
  });

  it.skipIf(!composeAvailable)('is accepted by `docker compose config`', () => {
    const result = spawnSync('docker', ['compose', '-f', composeFile, 'config', '-q'], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 60_000,
      env: {
        ...process.env,
        INTEGRATION_ENCRYPTION_KEY: 'dummy-key-for-config-check',
        TEMPORAL_PAYLOAD_KEY: 'dummy-payload-key-for-config-check',
        CODEC_SERVER_TOKEN: 'dummy-codec-server-token-for-config-check',
        REALITY_OIDC_CLIENT_SECRET: 'dummy-reality-client-secret-for-config-check',
        REALITY_PUBLIC_URL: 'https://portal.example',
        PUBLIC_BASE_URL: 'http://localhost:3000',
      },
    });
    expect(result.status, result.stderr).toBe(0);
  });
});
