import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { signAirbnbWebhook, type FakeAirbnb } from '../../fakes/airbnb';
import { startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { AIRBNB_WEBHOOK_SECRET, airbnbEnvironment, auditTrail, connectAirbnb, startTestAirbnb } from '../helpers/airbnb';

const WEBHOOK_PATH = '/api/v1/webhooks/airbnb';

/**
 * The Airbnb webhook receiver on a real Temporal dev server and real Postgres, fed by the fake Airbnb
 * over HTTP: only correctly signed events count, each event is acted on once, and without a configured
 * secret nothing is accepted at all.
 */
describe('Airbnb webhooks (dev server)', () => {
  let temporal: TestWorkflowEnvironment;
  let airbnb: FakeAirbnb;
  let platform: TestPlatform;
  let host: { userId: string };
  let connection: { connectionId: string; workflowId: string };

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    airbnb = await startTestAirbnb();
    platform = await startTestPlatform({ temporal, environment: airbnbEnvironment(airbnb) });
    const user = await platform.signUp('webhook.host@example.com');
    host = airbnb.createHost(['Harbour Flat']);
    connection = await connectAirbnb(platform, user.sessionToken);
    await waitForConnectionState(platform, connection.workflowId, (state) => state.status === 'active' && (state.sync?.runCount ?? 0) >= 1);
  });

  afterAll(async () => {
    await platform?.close();
    await airbnb?.close();
    await temporal?.teardown();
  });

  const webhookUrl = (target: TestPlatform = platform) => `${target.apiUrl}${WEBHOOK_PATH}`;
  const providerEventSignals = async () => {
    const history = await platform.client.workflow.getHandle(connection.workflowId).fetchHistory();
    return (history.events ?? []).filter((event) => event.workflowExecutionSignaledEventAttributes?.signalName === 'providerEvent').length;
  };
  const deliveries = () =>
    platform.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM webhook_deliveries WHERE provider = 'airbnb'`);
  /** A delivery of our own making: `body` and headers as given, stamped now unless the headers say otherwise. */
  const post = (url: string, body: string, headers: Record<string, string>) =>
    fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-airbnb-timestamp': nowSeconds(), ...headers }, body }).then(async (response) => ({
      status: response.status,
      body: await response.json(),
    }));
  const nowSeconds = () => String(Math.floor(Date.now() / 1000));
  const signed = (body: string, timestamp = nowSeconds()) => signAirbnbWebhook(AIRBNB_WEBHOOK_SECRET, timestamp, body);

  it('refuses a forged or missing signature with 401, audits it without secrets, and signals nothing', async () => {
    const signalsBefore = await providerEventSignals();
    const forged = await airbnb.sendReservationEvent({ userId: host.userId, signature: 'bad' });
    const unsigned = await airbnb.sendReservationEvent({ userId: host.userId, signature: 'missing' });
    const body = JSON.stringify({ event_id: 'tampered-1', event_type: 'reservation.created', user_id: Number(host.userId) });
    const tampered = await post(webhookUrl(), body, { 'x-airbnb-signature': signed(`${body} `).toString('hex') });
    // The signing time is signed too: the same MAC under another timestamp is a forgery.
    const timestamp = nowSeconds();
    const restamped = await post(webhookUrl(), body, { 'x-airbnb-signature': signed(body, timestamp).toString('hex'), 'x-airbnb-timestamp': String(Number(timestamp) - 1) });
    const unstamped = await post(webhookUrl(), body, { 'x-airbnb-signature': signed(body).toString('hex'), 'x-airbnb-timestamp': 'yesterday' });

    for (const answer of [...forged.deliveries, ...unsigned.deliveries, tampered, restamped, unstamped]) {
      expect(answer).toMatchObject({ status: 401, body: { error: 'invalid_signature', message: expect.any(String) } });
    }
    const rejections = (await auditTrail(platform, { provider: 'airbnb' })).filter((row) => row.action === 'WebhookRejected');
    expect(rejections.map((row) => [row.outcome, row.details.reason])).toEqual([
      ['failure', 'signature_mismatch'],
      ['failure', 'missing_signature'],
      ['failure', 'signature_mismatch'],
      ['failure', 'signature_mismatch'],
      ['failure', 'missing_timestamp'],
    ]);
    const recorded = JSON.stringify(rejections);
    for (const secret of airbnb.issuedSecrets()) expect(recorded).not.toContain(secret);
    expect(await deliveries()).toBe(0);
    expect(await providerEventSignals()).toBe(signalsBefore);
  });

  it('acts on a delivery once: a redelivery of the same event is acknowledged and does nothing', async () => {
    const signalsBefore = await providerEventSignals();
    const first = await airbnb.sendReservationEvent({ userId: host.userId, type: 'reservation.created' });
    const again = await airbnb.sendReservationEvent({ userId: host.userId, type: 'reservation.created', eventId: first.eventId });
    expect(first.deliveries).toEqual([{ url: webhookUrl(), status: 200, body: { outcome: 'delivered' } }]);
    expect(again.deliveries).toEqual([{ url: webhookUrl(), status: 200, body: { outcome: 'duplicate' } }]);
    expect(await deliveries()).toBe(1);
    expect(await providerEventSignals()).toBe(signalsBefore + 1);
  });

  it('acknowledges events of unknown hosts and other event types without acting, and refuses a signed body that is no event', async () => {
    const unknownHost = await airbnb.sendReservationEvent({ userId: '987654321', url: webhookUrl() });
    const otherType = await airbnb.sendReservationEvent({ userId: host.userId, type: 'listing.updated' });
    expect(unknownHost.deliveries).toEqual([expect.objectContaining({ status: 200, body: { outcome: 'ignored' } })]);
    expect(otherType.deliveries).toEqual([expect.objectContaining({ status: 200, body: { outcome: 'ignored' } })]);
    for (const body of ['not json', JSON.stringify({ event_type: 'reservation.created' }), JSON.stringify({ event_id: 'a\u0000b', event_type: 'reservation.created', user_id: 1 })]) {
      expect(await post(webhookUrl(), body, { 'x-airbnb-signature': signed(body).toString('hex') })).toMatchObject({ status: 400, body: { error: 'invalid_event' } });
    }
    expect(await deliveries()).toBe(1);
  });

  it('follows the configured signature header and encoding', async () => {
    const base64Platform = await startTestPlatform({
      temporal,
      environment: airbnbEnvironment(airbnb, {
        AIRBNB_WEBHOOK_SIGNATURE_HEADER: 'x-partner-signature',
        AIRBNB_WEBHOOK_SIGNATURE_ENCODING: 'base64',
        AIRBNB_WEBHOOK_TIMESTAMP_HEADER: 'x-partner-timestamp',
      }),
    });
    try {
      const body = JSON.stringify({ event_id: 'scheme-1', event_type: 'reservation.created', user_id: 55 });
      const timestamp = nowSeconds();
      const mac = signed(body, timestamp);
      const base64 = mac.toString('base64');
      const stamp = { 'x-partner-timestamp': timestamp };
      expect(await post(webhookUrl(base64Platform), body, { ...stamp, 'x-partner-signature': base64 })).toEqual({ status: 200, body: { outcome: 'ignored' } });
      expect((await post(webhookUrl(base64Platform), body, { ...stamp, 'x-partner-signature': mac.toString('hex') })).status).toBe(401);
      expect((await post(webhookUrl(base64Platform), body, { ...stamp, 'x-airbnb-signature': base64 })).status).toBe(401);
      // The default timestamp header is not the configured one.
      expect((await post(webhookUrl(base64Platform), body, { 'x-partner-signature': base64 })).status).toBe(401);
    } finally {
      await base64Platform.close();
    }
  });

  it('moves the host\'s connection to needs_reauth at once when Airbnb reports the authorization revoked', async () => {
    const user = await platform.signUp('revoked.host@example.com');
    const revokedHost = airbnb.createHost(['Quay Cottage']);
    const revoked = await connectAirbnb(platform, user.sessionToken);
    // Airbnb sends events to the host's subscription, which the connection's setup makes.
    await waitForConnectionState(platform, revoked.workflowId, (state) => state.status === 'active' && state.providerSetUpDone === true);
    const forged = await airbnb.sendReservationEvent({ userId: revokedHost.userId, type: 'authorization.revoked', signature: 'bad' });
    expect(forged.deliveries[0]!.status).toBe(401);
    expect((await waitForConnectionState(platform, revoked.workflowId, () => true)).status).toBe('active');

    const notice = await airbnb.sendReservationEvent({ userId: revokedHost.userId, type: 'authorization.revoked' });
    expect(notice.deliveries).toEqual([{ url: webhookUrl(), status: 200, body: { outcome: 'delivered' } }]);
    const state = await waitForConnectionState(platform, revoked.workflowId, (current) => current.status === 'needs_reauth', 10_000);
    expect(state.lastError).toMatchObject({ kind: 'authorization_revoked' });
    expect((await auditTrail(platform, { connectionId: revoked.connectionId })).map((row) => row.action)).toEqual(
      expect.arrayContaining(['IntegrationSecurityEvent', 'IntegrationNeedsReauth']),
    );
    // The first connection of this file's host is untouched.
    expect((await waitForConnectionState(platform, connection.workflowId, () => true)).status).toBe('active');
  });

  it('refuses a captured delivery replayed later than AIRBNB_WEBHOOK_MAX_AGE_SECONDS, however well signed', async () => {
    const signalsBefore = await providerEventSignals();
    const deliveriesBefore = await deliveries();
    const captured = new Date(Date.now() - 301_000);
    const replayed = await airbnb.sendReservationEvent({ userId: host.userId, type: 'authorization.revoked', signedAt: captured });
    const fromTheFuture = await airbnb.sendReservationEvent({ userId: host.userId, signedAt: new Date(Date.now() + 301_000) });
    for (const answer of [...replayed.deliveries, ...fromTheFuture.deliveries]) {
      expect(answer).toMatchObject({ status: 401, body: { error: 'invalid_signature', message: expect.stringContaining('300 seconds') } });
    }
    const rejections = (await auditTrail(platform, { provider: 'airbnb' })).filter((row) => row.action === 'WebhookRejected');
    expect(rejections.slice(-2).map((row) => row.details.reason)).toEqual(['stale_timestamp', 'stale_timestamp']);
    expect(await deliveries()).toBe(deliveriesBefore);
    expect(await providerEventSignals()).toBe(signalsBefore);
    expect((await waitForConnectionState(platform, connection.workflowId, () => true)).status).toBe('active');
  });

  it('ignores a revocation signed before the host authorized again, and applies one signed after', async () => {
    const user = await platform.signUp('reauthorized.host@example.com');
    const reauthorizedHost = airbnb.createHost(['Pier House']);
    const first = await connectAirbnb(platform, user.sessionToken);
    await waitForConnectionState(platform, first.workflowId, (state) => state.status === 'active' && state.providerSetUpDone === true);
    // The first authorization happened an hour ago; the host authorizes again now.
    await platform.db.query(sql.unsafe`UPDATE integration_authorizations SET created_at = now() - interval '1 hour' WHERE connection_id = ${first.connectionId}`);
    const beforeReauthorization = new Date(Date.now() - 60_000);
    const again = await connectAirbnb(platform, user.sessionToken);
    expect(again.connectionId).toBe(first.connectionId);
    await waitForConnectionState(platform, first.workflowId, (state) => state.status === 'active' && state.tokenVersion >= 2);

    const late = await airbnb.sendReservationEvent({ userId: reauthorizedHost.userId, type: 'authorization.revoked', signedAt: beforeReauthorization });
    expect(late.deliveries).toEqual([{ url: webhookUrl(), status: 200, body: { outcome: 'ignored' } }]);
    const ignored = (await auditTrail(platform, { connectionId: first.connectionId })).filter((row) => row.action === 'IntegrationSecurityEvent');
    expect(ignored.map((row) => row.details)).toEqual([{ event: 'authorization.revoked', ignored: 'authorized_after_event' }]);
    expect((await waitForConnectionState(platform, first.workflowId, () => true)).status).toBe('active');

    const current = await airbnb.sendReservationEvent({ userId: reauthorizedHost.userId, type: 'authorization.revoked' });
    expect(current.deliveries).toEqual([{ url: webhookUrl(), status: 200, body: { outcome: 'delivered' } }]);
    await waitForConnectionState(platform, first.workflowId, (state) => state.status === 'needs_reauth', 10_000);
  });

  it('without a configured secret answers 503 to every event and subscribes to nothing', async () => {
    const unsigned = await startTestPlatform({ temporal, environment: airbnbEnvironment(airbnb, { AIRBNB_WEBHOOK_SECRET: '' }) });
    try {
      const user = await unsigned.signUp('no.secret@example.com');
      const otherHost = airbnb.createHost(['Dune House']);
      const connected = await connectAirbnb(unsigned, user.sessionToken);
      await waitForConnectionState(unsigned, connected.workflowId, (state) => state.status === 'active' && (state.sync?.runCount ?? 0) >= 1);
      expect(airbnb.liveSubscriptions().filter((subscription) => subscription.userId === otherHost.userId)).toEqual([]);

      const sent = await airbnb.sendReservationEvent({ userId: otherHost.userId, url: webhookUrl(unsigned) });
      expect(sent.deliveries).toEqual([expect.objectContaining({ status: 503, body: { error: 'webhooks_not_configured', message: expect.any(String) } })]);
      const stored = await unsigned.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM webhook_deliveries`);
      expect(stored).toBe(0);
    } finally {
      await unsigned.close();
    }
  });
});
