import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { OAUTH_ERROR_CODES } from '../../platform/oauth-server/errors';
import { startRealityTestServers, type RealityTestServers } from '../helpers/reality';
import { registeredRoutes } from '../helpers/routes';
import { startTemporalDevServer } from '../helpers/temporal';
import { DatabaseFingerprint, errorShapeViolation, FUZZ_SEED, fuzzFailure, fuzzRequest, routeFromTree, send, type FuzzContext } from './http-fuzz';

/**
 * Issue 11, bad input, the reality-server's half: it has no OpenAPI document, so its routes come from
 * Fastify's route tree, each fed hostile requests by fast-check (fixed seed; FUZZ_SEED to replay
 * another) with and without a portal session and a PM session. Every answer is below 500 and, when it
 * is an error, an HTML page or one of the JSON error shapes; a refused request changes nothing in the
 * shared database but the audit log and bookkeeping (see http-fuzz.ts).
 */

const RUNS_PER_ROUTE = Number(process.env.FUZZ_RUNS ?? 30);
// What the portal's routes read from a query or a form; the tree does not say which route reads which.
const PARAMETER_NAMES = ['sso_token', 'press', 'code', 'state', 'error', 'iss', 'logout_token', 'email', 'password', 'csrf_token'];

describe('fuzz: every reality-server endpoint', () => {
  let temporal: TestWorkflowEnvironment;
  let servers: RealityTestServers;
  let fingerprint: DatabaseFingerprint;
  let context: FuzzContext;

  beforeAll(async () => {
    // A real Temporal server (no worker: nothing writes but the requests), so readiness is honest.
    temporal = await startTemporalDevServer();
    servers = await startRealityTestServers({ temporal: temporal.client });
    const pm = await servers.signInPmUser({ roles: ['owner'] });
    const { sessionToken } = await servers.apiPortalSession(pm);
    const pmCookie = `pm_session=${pm.browser.cookies.get('pm_session')}`;
    // A second user's sessions, which a valid logout token among the hints may end.
    const other = await servers.signInPmUser();
    await servers.apiPortalSession(other);
    context = {
      authorizations: [`Bearer ${sessionToken}`, 'Bearer x'],
      cookies: [`portal_session=${sessionToken}`, `portal_session=${sessionToken}; ${pmCookie}`, pmCookie, 'portal_sso_binding=x; portal_oidc_flow=y'],
      hints: {
        sso_token: [await servers.mintSsoToken({ userId: other.user.id, sessionId: other.sessionId }), await servers.mintSsoToken({ userId: pm.user.id, sessionId: pm.sessionId }, { lifetimeSeconds: -60 })],
        logout_token: [await servers.mintLogoutToken({ sessionId: other.sessionId }), await servers.mintLogoutToken({ subject: 'unknown' })],
        email: [pm.user.email, other.user.email],
        password: ['wrong password'],
        state: ['x'],
        code: ['x'],
      },
    };
    fingerprint = await DatabaseFingerprint.of(servers.config.databaseUrl!);
  });

  afterAll(async () => {
    await fingerprint?.close();
    await servers?.close();
    await temporal?.teardown();
  });

  it('reaches every route and answers each hostile request below 500, as a page or an error shape, changing nothing when it refuses', async () => {
    const routes = registeredRoutes(servers.app).map((route) => routeFromTree(route, PARAMETER_NAMES));
    expect(routes.map((route) => `${route.method} ${route.path}`)).toEqual(expect.arrayContaining(['GET /', 'GET /sso/redeem', 'POST /sso/backchannel-logout', 'POST /login']));
    const failures: string[] = [];

    for (const [index, route] of routes.entries()) {
      const property = fc.asyncProperty(fuzzRequest(route, context), async (request) => {
        const before = await fingerprint.take();
        const response = await send(servers.url, request);
        const after = await fingerprint.take();
        if (response.status >= 500) throw new Error(`answered ${response.status}: ${response.text.slice(0, 300)}`);
        const shape = errorShapeViolation(route, response, OAUTH_ERROR_CODES);
        if (shape) throw new Error(shape);
        const changed = DatabaseFingerprint.changedTables(before, after);
        if (response.status >= 400 && changed.length > 0) throw new Error(`refused with ${response.status} but changed ${changed.join(', ')}: ${response.text.slice(0, 200)}`);
      });
      try {
        await fc.assert(property, { seed: FUZZ_SEED + index, numRuns: RUNS_PER_ROUTE, endOnFailure: true });
      } catch (error) {
        failures.push(`${route.method} ${route.path} (FUZZ_SEED=${FUZZ_SEED}, route seed ${FUZZ_SEED + index}): ${fuzzFailure(error)}`);
      }
    }

    expect(failures, failures.join('\n\n')).toEqual([]);
    expect((await fetch(`${servers.url}/healthz`)).status).toBe(200);
  });
});
