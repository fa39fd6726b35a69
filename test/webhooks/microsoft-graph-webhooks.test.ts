import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { connectMicrosoftCalendar, MICROSOFT_TEST_CLIENT, microsoftEnvironment } from '../helpers/microsoft';
import { startFakeMicrosoft, type FakeMicrosoft } from '../../fakes/microsoft';
import type { FakeGraphCall } from '../../fakes/microsoft-graph';

const DAY = 24 * 3600 * 1000;

/**
 * Microsoft Graph webhooks over real HTTP from the fake Graph to the api-server, with a real workflow
 * behind them: the validation handshake, clientState checks, duplicates, and the lifecycle events.
 */
describe('Microsoft Graph webhooks (dev server)', () => {
  let temporal: TestWorkflowEnvironment;
  let microsoft: FakeMicrosoft;
  let platform: TestPlatform;
  let connection: { connectionId: string; workflowId: string; oid: string; eventId: string };

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    microsoft = await startFakeMicrosoft(MICROSOFT_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, environment: microsoftEnvironment(microsoft) });
    const { sessionToken } = await platform.signUp('webhooks@example.com');
    const oid = microsoft.prepareAccount();
    const eventId = microsoft.addEvent(oid, { subject: 'Stay', start: new Date(Date.now() + DAY).toISOString(), end: new Date(Date.now() + 2 * DAY).toISOString() });
    const connected = await connectMicrosoftCalendar(platform, microsoft, sessionToken);
    connection = { connectionId: connected.connectionId, workflowId: connected.workflowId, oid, eventId };
    await runs(1);
  });

  afterAll(async () => {
    await platform?.close();
    await microsoft?.close();
    await temporal?.teardown();
  });

  const webhookUrl = () => `${platform.apiUrl}/api/v1/webhooks/microsoft-graph`;
  const liveSubscription = () => {
    const [subscription] = microsoft.liveSubscriptions(connection.oid);
    if (!subscription) throw new Error('no live subscription at the fake');
    return subscription;
  };
  const runs = (count: number) => waitForConnectionState(platform, connection.workflowId, (state) => (state.sync?.runCount ?? 0) >= count);
  const runCount = async () => (await waitForConnectionState(platform, connection.workflowId, () => true)).sync?.runCount ?? 0;
  const count = (query: ReturnType<typeof sql.unsafe>) => platform.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM (${query}) AS rows`);
  const rejections = () =>
    platform.db.any(sql.type(z.object({ connectionId: z.string().nullable(), details: z.record(z.unknown()) }))`
      SELECT connection_id AS "connectionId", details FROM audit_log WHERE action = 'WebhookRejected' ORDER BY id`);
  const providerEventSignals = async () => {
    const history = await platform.client.workflow.getHandle(connection.workflowId).fetchHistory();
    return history.events!.filter((event) => event.workflowExecutionSignaledEventAttributes?.signalName === 'providerEvent').length;
  };
  async function until(predicate: () => boolean | Promise<boolean>, what: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (!(await predicate())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  it('answers the validation handshake on both URLs with the decoded token and nothing else', async () => {
    const deliveries = await count(sql.unsafe`SELECT 1 FROM webhook_deliveries`);
    const audits = await count(sql.unsafe`SELECT 1 FROM audit_log`);
    const token = 'Validation: Testing client application reachability for subscription Request-Id: 8a0c2b8e-5f1b-4c9e-9b0a-3d3f1f0e7c11';
    for (const url of [webhookUrl(), `${webhookUrl()}/lifecycle`]) {
      const response = await fetch(`${url}?validationToken=${encodeURIComponent(token)}`, { method: 'POST', headers: { 'content-type': 'text/plain; charset=utf-8' }, body: '' });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(await response.text()).toBe(token);
    }
    expect(await count(sql.unsafe`SELECT 1 FROM webhook_deliveries`)).toBe(deliveries);
    expect(await count(sql.unsafe`SELECT 1 FROM audit_log`)).toBe(audits);
  });

  it('refuses malformed requests with a clear error and changes nothing', async () => {
    const audits = await count(sql.unsafe`SELECT 1 FROM audit_log`);
    const post = (contentType: string, body: string) => fetch(webhookUrl(), { method: 'POST', headers: { 'content-type': contentType }, body });
    expect((await post('application/x-www-form-urlencoded', 'value=a&value=b')).status).toBe(415);
    expect((await post('text/plain', '')).status).toBe(415);
    expect((await post('application/json', '{"value": "not a list"}')).status).toBe(400);
    expect((await post('application/json', '{"value": [{"clientState": "x"}]}')).status).toBe(400);
    const nul = await post('application/json', JSON.stringify({ value: [{ subscriptionId: 'a\u0000b', clientState: 'x' }] }));
    expect(nul.status).toBe(400);
    expect(await nul.json()).toMatchObject({ error: 'invalid_request' });
    expect(await count(sql.unsafe`SELECT 1 FROM audit_log`)).toBe(audits);
  });

  it('the fake Graph refuses to create a subscription whose URL fails the handshake, as Graph does', async () => {
    const accessToken = platform.crypto.decrypt(
      await platform.db.oneFirst(sql.type(z.object({ token: z.string() }))`SELECT access_token_enc AS token FROM integration_connections WHERE id = ${connection.connectionId}`),
      { table: 'integration_connections', column: 'access_token_enc', rowId: connection.connectionId },
    );
    const response = await fetch(`${microsoft.graphUrl}/subscriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ changeType: 'updated', resource: 'me/events', notificationUrl: `${platform.apiUrl}/healthz`, expirationDateTime: new Date(Date.now() + DAY).toISOString(), clientState: 'x' }),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: 'ValidationError' } });
  });

  it('rejects a notification whose clientState does not match, audits it, and signals nothing', async () => {
    const subscription = liveSubscription();
    const signalsBefore = await providerEventSignals();
    const forged = await microsoft.notify(subscription.id, { eventId: connection.eventId, changeType: 'updated', clientState: 'forged-client-state-value' });
    expect(forged.status).toBe(403);
    expect(JSON.parse(forged.body)).toMatchObject({ error: 'forbidden' });
    const unknown = await fetch(webhookUrl(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ value: [{ subscriptionId: 'not-ours', clientState: 'x', changeType: 'updated' }] }) });
    expect(unknown.status).toBe(403);

    const [mismatch, stranger] = (await rejections()).slice(-2);
    expect(mismatch).toEqual({ connectionId: connection.connectionId, details: { endpoint: 'notifications', count: 1, reasons: ['client_state_mismatch'], subscriptionIds: [subscription.id] } });
    expect(stranger).toEqual({ connectionId: null, details: { endpoint: 'notifications', count: 1, reasons: ['unknown_subscription'], subscriptionIds: ['not-ours'] } });
    expect(JSON.stringify(await rejections())).not.toContain(subscription.clientState!);

    // A batch with one genuine and one forged item: the genuine one counts, the forged one is audited.
    const genuine = { subscriptionId: subscription.id, clientState: subscription.clientState, changeType: 'created', resource: `Users/${connection.oid}/Events/new-one` };
    const syncsBefore = await runCount();
    const mixed = await fetch(webhookUrl(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ value: [genuine, { ...genuine, clientState: 'forged' }] }) });
    expect(mixed.status).toBe(202);
    expect((await rejections()).at(-1)).toMatchObject({ connectionId: connection.connectionId, details: { reasons: ['client_state_mismatch'], count: 1 } });
    expect(await providerEventSignals()).toBe(signalsBefore + 1);
    await runs(syncsBefore + 1);
  });

  it('hands a notification to the workflow once, however often Graph delivers it', async () => {
    const before = await runCount();
    const signalsBefore = await providerEventSignals();
    const deliveries = () => count(sql.unsafe`SELECT 1 FROM webhook_deliveries WHERE connection_id = ${connection.connectionId}`);
    const deliveriesBefore = await deliveries();
    microsoft.updateEvent(connection.oid, connection.eventId, { subject: 'Stay (extended)' });
    const first = await microsoft.notify(liveSubscription().id, { eventId: connection.eventId, changeType: 'updated' });
    const again = await microsoft.notify(liveSubscription().id, { eventId: connection.eventId, changeType: 'updated' });
    expect([first.status, again.status]).toEqual([202, 202]);
    await runs(before + 1);
    expect(await providerEventSignals()).toBe(signalsBefore + 1);
    expect(await deliveries()).toBe(deliveriesBefore + 1);
  });

  it('reauthorizes a subscription when Graph asks', async () => {
    const subscription = liveSubscription();
    const response = await microsoft.sendLifecycleEvent(subscription.id, 'reauthorizationRequired');
    expect(response.status).toBe(202);
    await until(() => liveSubscription().reauthorizations === 1, 'the reauthorize call');
    expect(microsoft.calls.filter((call): call is FakeGraphCall => call.endpoint === 'subscriptions.reauthorize')).toEqual([expect.objectContaining({ subscriptionId: subscription.id, status: 204 })]);
    expect(liveSubscription().reauthorizationRequired).toBe(false);
  });

  it('creates a new subscription when Graph removed one, and refuses notifications for the old one', async () => {
    const removed = liveSubscription();
    expect((await microsoft.sendLifecycleEvent(removed.id, 'subscriptionRemoved')).status).toBe(202);
    const rows = () =>
      platform.db.any(sql.type(z.object({ externalId: z.string(), status: z.string() }))`
        SELECT external_id AS "externalId", status FROM webhook_subscriptions WHERE connection_id = ${connection.connectionId} ORDER BY created_at`);
    // Our row is written before Graph is asked and takes Graph's id once Graph answers: wait for that.
    await until(async () => {
      const newest = (await rows()).at(-1);
      return newest !== undefined && newest.externalId !== removed.id && microsoft.liveSubscriptions(connection.oid).some((live) => live.id === newest.externalId);
    }, 'a new subscription');
    const replacement = liveSubscription();
    expect(microsoft.liveSubscriptions(connection.oid)).toHaveLength(1);
    expect(replacement.id).not.toBe(removed.id);
    expect(replacement.clientState).not.toBe(removed.clientState);
    expect((await rows()).slice(-2)).toEqual([{ externalId: removed.id, status: 'expired' }, { externalId: replacement.id, status: 'active' }]);

    const audit = await platform.db.any(sql.type(z.object({ action: z.string(), details: z.record(z.unknown()) }))`
      SELECT action, details FROM audit_log WHERE connection_id = ${connection.connectionId} AND action LIKE 'WebhookSubscription%' ORDER BY id`);
    expect(audit.slice(-2)).toEqual([
      { action: 'WebhookSubscriptionStop', details: { subscriptionId: removed.id, reason: 'removed_by_provider' } },
      { action: 'WebhookSubscriptionCreate', details: expect.objectContaining({ subscriptionId: replacement.id, reason: 'subscription_removed' }) },
    ]);

    const late = await microsoft.notify(removed.id, { eventId: connection.eventId, changeType: 'updated' });
    expect(late.status).toBe(403);
    expect((await rejections()).at(-1)!.details).toMatchObject({ reasons: ['subscription_not_active'] });
  });

  it('adopts the replacement whose creation answer was lost, so Graph holds one subscription, not two', async () => {
    const removed = liveSubscription();
    const since = microsoft.calls.length;
    const creates = () => microsoft.calls.slice(since).filter((call): call is FakeGraphCall => call.endpoint === 'subscriptions.create');
    const activeRows = () =>
      platform.db.anyFirst(sql.type(z.object({ externalId: z.string() }))`
        SELECT external_id AS "externalId" FROM webhook_subscriptions WHERE connection_id = ${connection.connectionId} AND status = 'active'`);
    microsoft.switches.loseCreateAnswers(1);
    expect((await microsoft.sendLifecycleEvent(removed.id, 'subscriptionRemoved')).status).toBe(202);
    await until(() => creates().length > 0, 'the replacement');
    const made = creates()[0]!;
    expect(made.status).toBe(504);
    await until(async () => (await activeRows()).includes(made.subscriptionId!), 'the renewal retry to adopt it');

    expect(creates()).toHaveLength(1);
    expect(microsoft.liveSubscriptions(connection.oid).map((subscription) => subscription.id)).toEqual([made.subscriptionId]);
    expect(await activeRows()).toEqual([made.subscriptionId]);
    const before = await runCount();
    expect((await microsoft.notify(made.subscriptionId!, { eventId: connection.eventId, changeType: 'updated' })).status).toBe(202);
    await runs(before + 1);
  });

  it('syncs when Graph reports missed notifications', async () => {
    const before = await runCount();
    const since = microsoft.calls.length;
    const added = microsoft.addEvent(connection.oid, { subject: 'Missed booking', start: new Date(Date.now() + 3 * DAY).toISOString(), end: new Date(Date.now() + 4 * DAY).toISOString() });
    expect((await microsoft.sendLifecycleEvent(liveSubscription().id, 'missed')).status).toBe(202);
    const state = await runs(before + 1);
    expect(state.sync!.lastCounts).toMatchObject({ created: 1 });
    expect(microsoft.calls.slice(since).filter((call): call is FakeGraphCall => call.endpoint === 'delta').map((call) => call.delta)).toEqual(['incremental']);
    expect(await count(sql.unsafe`SELECT 1 FROM calendar_events WHERE external_id = ${added}`)).toBe(1);
  });

  it('acknowledges lifecycle events it has no use for, even ones named like object properties, and changes nothing', async () => {
    const subscription = liveSubscription();
    const signalsBefore = await providerEventSignals();
    const deliveriesBefore = await count(sql.unsafe`SELECT 1 FROM webhook_deliveries`);
    const rejectionsBefore = (await rejections()).length;
    for (const lifecycleEvent of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'somethingNew']) {
      const response = await fetch(`${webhookUrl()}/lifecycle`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ value: [{ subscriptionId: subscription.id, clientState: subscription.clientState, lifecycleEvent }] }),
      });
      expect([lifecycleEvent, response.status]).toEqual([lifecycleEvent, 202]);
    }
    expect(await providerEventSignals()).toBe(signalsBefore);
    expect(await count(sql.unsafe`SELECT 1 FROM webhook_deliveries`)).toBe(deliveriesBefore);
    expect(await rejections()).toHaveLength(rejectionsBefore);
    expect((await waitForConnectionState(platform, connection.workflowId, () => true)).status).toBe('active');
  });
});
