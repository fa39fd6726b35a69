import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, REALITY_SERVER_NEEDS } from '../../platform/config';

describe('service settings', () => {
  it('defaults: 30 s shutdown grace, reality-server on 3002, OpenAPI off only in production', () => {
    const development = loadConfig({ APP_ENV: 'development' });
    expect(development.workerShutdownGraceSeconds).toBe(30);
    expect(development.realityServer).toEqual({ host: '0.0.0.0', port: 3002 });
    expect(development.openapiEnabled).toBe(true);
    const production = loadConfig(
      {
        DATABASE_URL: 'postgres://db/app',
        TEMPORAL_PAYLOAD_KEY: 'set',
        PUBLIC_BASE_URL: 'https://pm.example',
        REALITY_PUBLIC_URL: 'https://portal.example',
        REALITY_OIDC_CLIENT_SECRET: 'x'.repeat(32),
      },
      REALITY_SERVER_NEEDS,
    );
    expect(production.openapiEnabled).toBe(false);
    expect(loadConfig({ APP_ENV: 'development', OPENAPI_ENABLED: 'false', WORKER_SHUTDOWN_GRACE_SECONDS: '0' })).toMatchObject({ openapiEnabled: false, workerShutdownGraceSeconds: 0 });
  });

  it('worker sizing and the authorization code lifetime: defaults, settings, and values that stop the process', () => {
    expect(loadConfig({ APP_ENV: 'development' })).toMatchObject({
      workerMaxCachedWorkflows: undefined,
      workerMaxConcurrentWorkflowTasks: 40,
      workerMaxWorkflowTaskPolls: 10,
      workerNonStickyPollRatio: 0.2,
      workerMaxConcurrentActivities: 10,
      authorizationCodeLifetimeSeconds: 600,
    });
    expect(
      loadConfig({ APP_ENV: 'development', WORKER_MAX_CACHED_WORKFLOWS: '0', WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: '8', AUTHORIZATION_CODE_LIFETIME_SECONDS: '60' }),
    ).toMatchObject({ workerMaxCachedWorkflows: 0, workerMaxConcurrentWorkflowTasks: 8, workerMaxWorkflowTaskPolls: 8, authorizationCodeLifetimeSeconds: 60 });
    expect(loadConfig({ APP_ENV: 'development', WORKER_MAX_WORKFLOW_TASK_POLLS: '20', WORKER_NON_STICKY_POLL_RATIO: '1' })).toMatchObject({
      workerMaxWorkflowTaskPolls: 20,
      workerNonStickyPollRatio: 1,
    });
    for (const [name, value] of [['WORKER_MAX_CACHED_WORKFLOWS', '-1'], ['WORKER_MAX_CACHED_WORKFLOWS', '1'], ['WORKER_MAX_CONCURRENT_WORKFLOW_TASKS', '1'], ['WORKER_MAX_WORKFLOW_TASK_POLLS', '1'], ['WORKER_NON_STICKY_POLL_RATIO', '0'], ['WORKER_NON_STICKY_POLL_RATIO', '1.5'], ['AUTHORIZATION_CODE_LIFETIME_SECONDS', '10']]) {
      expect(() => loadConfig({ APP_ENV: 'development', [name!]: value })).toThrow(name);
    }
    expect(() => loadConfig({ APP_ENV: 'development', WORKER_MAX_CACHED_WORKFLOWS: '20', WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: '40' })).toThrow('WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: must not exceed');
    expect(loadConfig({ APP_ENV: 'development', WORKER_MAX_CACHED_WORKFLOWS: '0', WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: '40' }).workerMaxCachedWorkflows).toBe(0);
    expect(() => loadConfig({ APP_ENV: 'development', WORKER_MAX_WORKFLOW_TASK_POLLS: '41' })).toThrow('WORKER_MAX_WORKFLOW_TASK_POLLS: must not exceed');
    expect(loadConfig({ APP_ENV: 'development', WORKER_WORKFLOW_BUNDLE: 'dist/workflow-bundle.js' }).workerWorkflowBundlePath).toBe('dist/workflow-bundle.js');
  });

  it('names each malformed variable', () => {
    const error = (() => {
      try {
        loadConfig({ APP_ENV: 'development', OPENAPI_ENABLED: 'yes', REALITY_PORT: '70000', WORKER_SHUTDOWN_GRACE_SECONDS: '-1' });
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    for (const name of ['OPENAPI_ENABLED', 'REALITY_PORT', 'WORKER_SHUTDOWN_GRACE_SECONDS']) expect((error as ConfigError).message).toContain(name);
  });

  it('server-to-server addresses default to the public ones; each must be an http(s) URL', () => {
    const publicOnly = loadConfig({ APP_ENV: 'development', PUBLIC_BASE_URL: 'https://pm.example', REALITY_PUBLIC_URL: 'https://portal.example' });
    expect(publicOnly.authorizationServer.internalUrl).toBe('https://pm.example');
    expect(publicOnly.sso.portal.internalUrl).toBe('https://portal.example');
    expect(loadConfig({ APP_ENV: 'development', OAUTH_ISSUER: 'https://id.example/auth' }).authorizationServer.internalUrl).toBe('https://id.example/auth');

    const compose = loadConfig({
      APP_ENV: 'development',
      PUBLIC_BASE_URL: 'https://pm.example',
      REALITY_PUBLIC_URL: 'https://portal.example',
      API_INTERNAL_URL: 'http://api-server:3000/',
      REALITY_INTERNAL_URL: 'http://reality-server:3002',
    });
    expect(compose.authorizationServer).toMatchObject({ issuer: 'https://pm.example', internalUrl: 'http://api-server:3000' });
    expect(compose.sso.portal).toMatchObject({ publicUrl: 'https://portal.example', internalUrl: 'http://reality-server:3002' });

    expect(() => loadConfig({ APP_ENV: 'development', API_INTERNAL_URL: 'api-server:3000', REALITY_INTERNAL_URL: 'ftp://reality-server' })).toThrow(
      new ConfigError(['REALITY_INTERNAL_URL: must be an http(s) URL', 'API_INTERNAL_URL: must be an http(s) URL']).message,
    );
  });

  it('the reality-server needs its database, the payload key and its place as the api-server\'s client in production, nothing else', () => {
    expect(() => loadConfig({}, REALITY_SERVER_NEEDS)).toThrow(
      new ConfigError([
        'DATABASE_URL: is required in production',
        'TEMPORAL_PAYLOAD_KEY: is required in production',
        'PUBLIC_BASE_URL: is required in production',
        'REALITY_PUBLIC_URL: is required in production',
        'REALITY_OIDC_CLIENT_SECRET: is required in production',
      ]).message,
    );
  });
});
