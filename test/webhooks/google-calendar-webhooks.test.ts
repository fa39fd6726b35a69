import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import type { FakeChannel } from '../../fakes/google-push';
import { GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { connectGoogleAccount, liveChannelsOf, signalCount } from '../helpers/google-calendar';

/**
 * The Google Calendar push endpoint: only a notification that names an active channel of ours, with
 * that channel's token and resource, reaches the connection's workflow, and each message only once.
 */
describe('Google Calendar push notifications (dev server)', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  let connection: Awaited<ReturnType<typeof connectGoogleAccount>>;
  let channel: FakeChannel;
  const account = '200000000000000000001';

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, google });
    connection = await connectGoogleAccount(platform, google, 'push.ann@example.com', account);
    await waitForConnectionState(platform, connection.workflowId, (state) => (state.sync?.runCount ?? 0) >= 1);
    [channel] = liveChannelsOf(google, account) as [FakeChannel];
  });

  afterAll(async () => {
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  function post(headers: Record<string, string>) {
    return fetch(`${platform.apiUrl}/api/v1/webhooks/google-calendar`, { method: 'POST', headers });
  }

  function genuineHeaders(state: 'sync' | 'exists', messageNumber: number): Record<string, string> {
    return {
      'x-goog-channel-id': channel.id,
      'x-goog-channel-token': channel.token!,
      'x-goog-resource-id': channel.resourceId,
      'x-goog-resource-uri': channel.resourceUri,
      'x-goog-resource-state': state,
      'x-goog-message-number': String(messageNumber),
    };
  }

  const rejections = () =>
    platform.db.any(sql.type(z.object({ connectionId: z.string().nullable(), details: z.record(z.unknown()) }))`
      SELECT connection_id AS "connectionId", details FROM audit_log WHERE action = 'WebhookRejected' ORDER BY id`);

  it('rejects forged notifications, audits them without the token, and signals nothing', async () => {
    const before = await signalCount(platform, connection.workflowId, 'providerEvent');
    const forgedToken = await post({ ...genuineHeaders('exists', 900), 'x-goog-channel-token': 'guessed-token' });
    expect(forgedToken.status).toBe(401);
    expect(await forgedToken.json()).toMatchObject({ error: 'invalid_channel_token' });
    const { 'x-goog-channel-token': _token, ...withoutToken } = genuineHeaders('exists', 901);
    expect((await post(withoutToken)).status).toBe(401);
    const unknownChannel = await post({ ...genuineHeaders('exists', 902), 'x-goog-channel-id': randomUUID() });
    expect(unknownChannel.status).toBe(403);
    expect((await post({ ...genuineHeaders('exists', 903), 'x-goog-resource-id': 'another-resource' })).status).toBe(403);
    expect((await post({ 'x-goog-channel-id': channel.id })).status).toBe(400);

    expect(await rejections()).toEqual([
      { connectionId: connection.connectionId, details: { reason: 'token_mismatch', channelId: channel.id } },
      { connectionId: connection.connectionId, details: { reason: 'token_mismatch', channelId: channel.id } },
      { connectionId: null, details: { reason: 'unknown_channel', channelId: expect.any(String) } },
      { connectionId: connection.connectionId, details: { reason: 'resource_mismatch', channelId: channel.id } },
    ]);
    expect(await signalCount(platform, connection.workflowId, 'providerEvent')).toBe(before);
  });

  it('acknowledges the sync message without waking the workflow', async () => {
    const before = await signalCount(platform, connection.workflowId, 'providerEvent');
    expect((await post(genuineHeaders('sync', 1))).status).toBe(200);
    expect(await signalCount(platform, connection.workflowId, 'providerEvent')).toBe(before);
  });

  it('hands a change to the workflow once, however often Google delivers it', async () => {
    const runsBefore = (await waitForConnectionState(platform, connection.workflowId, () => true)).sync!.runCount;
    const deliveries = await google.notify(channel.id);
    const change = deliveries.find((delivery) => delivery.state === 'exists')!;
    expect(change.status).toBe(200);
    expect(await signalCount(platform, connection.workflowId, 'providerEvent')).toBe(1);
    await waitForConnectionState(platform, connection.workflowId, (state) => state.sync!.runCount === runsBefore + 1);

    const again = await google.redeliver(channel.id, change.messageNumber);
    expect(again.status).toBe(200);
    expect(await signalCount(platform, connection.workflowId, 'providerEvent')).toBe(1);
    expect((await waitForConnectionState(platform, connection.workflowId, () => true)).sync!.runCount).toBe(runsBefore + 1);
  });
});
