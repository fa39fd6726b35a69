import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { Client, Connection } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { FastifyInstance } from 'fastify';
import { buildApiServer } from '../../api/app';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import type { FakeChannel } from '../../fakes/google-push';
import { connectGoogleAccount, liveChannelsOf } from '../helpers/google-calendar';
import { GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { freePort } from '../helpers/ports';
import { startTemporalDevServer } from '../helpers/temporal';

/**
 * The api-server while Temporal cannot be reached: what needs a workflow answers 503 with Retry-After
 * (never 500), and what the request began is left so that the same request, sent again once Temporal is
 * back, completes: a webhook is not recorded as delivered, an authorization is not spent.
 */
describe('api-server with Temporal unreachable', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  let deadTemporal: Connection;
  // The same api-server, but its Temporal client points at a port nobody listens on.
  let cutOff: FastifyInstance;
  const account = '200000000000000000077';

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, google });
    // Without the client's retry interceptor the failure comes at once rather than after its backoff.
    deadTemporal = Connection.lazy({ address: `127.0.0.1:${await freePort()}`, interceptors: [] });
    cutOff = await buildApiServer({ ...platform, temporal: new Client({ connection: deadTemporal, dataConverter: { payloadCodecs: [platform.payloadCodec] } }) });
  });

  afterAll(async () => {
    await cutOff?.close();
    await deadTemporal?.close().catch(() => undefined);
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  const deliveries = () => platform.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM webhook_deliveries`);

  it('answers a push notification 503, records no delivery, and takes the redelivery once Temporal answers', async () => {
    const connection = await connectGoogleAccount(platform, google, 'outage.push@example.com', account);
    await waitForConnectionState(platform, connection.workflowId, (state) => (state.sync?.runCount ?? 0) >= 1);
    const channel = liveChannelsOf(google, account)[0] as FakeChannel;
    const headers = {
      'x-goog-channel-id': channel.id,
      'x-goog-channel-token': channel.token!,
      'x-goog-resource-id': channel.resourceId,
      'x-goog-resource-state': 'exists',
      'x-goog-message-number': '7001',
    };
    const before = await deliveries();

    const refused = await cutOff.inject({ method: 'POST', url: '/api/v1/webhooks/google-calendar', headers });
    expect(refused.statusCode).toBe(503);
    expect(refused.headers['retry-after']).toBeDefined();
    expect(refused.json()).toEqual({ error: 'temporarily_unavailable', message: expect.any(String) });
    expect(await deliveries()).toBe(before);

    const redelivered = await fetch(`${platform.apiUrl}/api/v1/webhooks/google-calendar`, { method: 'POST', headers });
    expect(redelivered.status).toBe(200);
    expect(await deliveries()).toBe(before + 1);
  });

  it('answers the OAuth callback 503 and keeps the authorization, so the same callback completes the connection later', async () => {
    const { sessionToken } = await platform.signUp('outage.callback@example.com');
    const auth = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/auth`, { headers: { authorization: `Bearer ${sessionToken}` }, redirect: 'manual' });
    const consent = await fetch(auth.headers.get('location')!, { redirect: 'manual' });
    const callbackUrl = new URL(consent.headers.get('location')!);

    const refused = await cutOff.inject({ url: `${callbackUrl.pathname}${callbackUrl.search}`, headers: { authorization: `Bearer ${sessionToken}` } });
    expect(refused.statusCode).toBe(503);
    expect(refused.json()).toEqual({ error: 'temporarily_unavailable', message: expect.any(String) });

    const retried = await fetch(callbackUrl, { headers: { authorization: `Bearer ${sessionToken}` } });
    expect(retried.status).toBe(202);
    const { workflowId } = (await retried.json()) as { workflowId: string };
    await waitForConnectionState(platform, workflowId, (state) => state.status === 'active');
  });
});
