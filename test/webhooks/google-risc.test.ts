import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { connectGoogleCalendar, GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { auditActions, connectGoogleAccount, signalCount } from '../helpers/google-calendar';

/**
 * Google Cross-Account Protection: a verified security event moves the Google account's connection to
 * needs_reauth with one signal, before any refresh fails; forged, replayed and test events change nothing.
 */
describe('Google RISC receiver (dev server)', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  let receiverUrl: string;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, google });
    receiverUrl = `${platform.apiUrl}/api/v1/webhooks/google-risc`;
    google.registerRiscReceiver(receiverUrl);
  });

  afterAll(async () => {
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  async function activeConnection(email: string, account: string) {
    const connection = await connectGoogleAccount(platform, google, email, account);
    await waitForConnectionState(platform, connection.workflowId, (state) => state.status === 'active');
    return connection;
  }

  const securityEvents = () =>
    platform.db.anyFirst(sql.type(z.object({ details: z.record(z.unknown()) }))`
      SELECT details FROM audit_log WHERE action = 'IntegrationSecurityEvent' ORDER BY id`);

  it('token-revoked naming our refresh token moves the connection to needs_reauth at once', async () => {
    const connection = await activeConnection('risc.ann@example.com', '300000000000000000001');
    const sealed = await platform.db.oneFirst(sql.type(z.object({ token: z.string() }))`
      SELECT refresh_token_enc AS token FROM integration_connections WHERE id = ${connection.connectionId}`);
    const refreshToken = platform.crypto.decrypt(sealed, { table: 'integration_connections', column: 'refresh_token_enc', rowId: connection.connectionId });
    const doubleHash = createHash('sha512').update(createHash('sha512').update(refreshToken).digest()).digest('base64');
    const tokenCalls = google.calls.filter((call) => call.endpoint === 'token').length;

    const delivery = await google.sendSecurityEvent('300000000000000000001', 'token-revoked', {
      subject: { subject_type: 'oauth_token', token_type: 'refresh_token', token_identifier_alg: 'hash_base64_sha512_sha512', token: doubleHash },
    });
    expect(delivery.status).toBe(202);

    const state = await waitForConnectionState(platform, connection.workflowId, (s) => s.status === 'needs_reauth');
    expect(state.lastError).toMatchObject({ kind: 'token-revoked' });
    expect(google.calls.filter((call) => call.endpoint === 'token')).toHaveLength(tokenCalls); // no refresh had to fail first
    expect(await signalCount(platform, connection.workflowId, 'invalidated')).toBe(1);
    expect(await auditActions(platform, connection.connectionId)).toEqual(expect.arrayContaining(['IntegrationSecurityEvent', 'IntegrationNeedsReauth']));
    const status = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/status`, { headers: { authorization: `Bearer ${connection.sessionToken}` } });
    expect(await status.json()).toMatchObject({ connected: false, connection: { status: 'needs_reauth' } });
  });

  it('account events find the connection by the Google account id from the id_token', async () => {
    const connection = await activeConnection('risc.bob@example.com', '300000000000000000002');
    const stored = await platform.db.oneFirst(sql.type(z.object({ account: z.string().nullable() }))`
      SELECT provider_account_id AS account FROM integration_connections WHERE id = ${connection.connectionId}`);
    expect(stored).toBe('300000000000000000002');

    const delivery = await google.sendSecurityEvent('300000000000000000002', 'account-disabled', { reason: 'hijacking', contentType: 'text/plain' });
    expect(delivery.status).toBe(202);
    await waitForConnectionState(platform, connection.workflowId, (s) => s.status === 'needs_reauth' && s.lastError?.kind === 'account-disabled');
    expect((await securityEvents()).at(-1)).toEqual({ event: 'account-disabled', jti: delivery.jti, reason: 'hijacking', connections: 1 });
  });

  it('rejects forged signatures, issuers, audiences and malformed bodies, audits them, and changes nothing', async () => {
    const account = '300000000000000000003';
    const connection = await activeConnection('risc.cleo@example.com', account);
    const answers = [
      await google.sendSecurityEvent(account, 'tokens-revoked', { signer: 'untrusted' }),
      await google.sendSecurityEvent(account, 'tokens-revoked', { issuer: 'https://accounts.example.com/' }),
      await google.sendSecurityEvent(account, 'tokens-revoked', { audience: 'someone-else.apps.googleusercontent.com' }),
    ];
    expect(answers.map((answer) => [answer.status, (JSON.parse(answer.body) as { error: string }).error])).toEqual([
      [401, 'invalid_key'],
      [401, 'invalid_issuer'],
      [401, 'invalid_audience'],
    ]);
    const malformed = await fetch(receiverUrl, { method: 'POST', headers: { 'content-type': 'application/secevent+jwt' }, body: 'not.a.jwt' });
    expect(malformed.status).toBe(400);

    const rejected = await platform.db.anyFirst(sql.type(z.object({ details: z.record(z.unknown()) }))`
      SELECT details FROM audit_log WHERE action = 'WebhookRejected' ORDER BY id`);
    expect(rejected).toEqual([{ reason: 'invalid_key' }, { reason: 'invalid_issuer' }, { reason: 'invalid_audience' }, { reason: 'invalid_request' }]);
    expect(await signalCount(platform, connection.workflowId, 'invalidated')).toBe(0);
    expect((await waitForConnectionState(platform, connection.workflowId, () => true)).status).toBe('active');
  });

  it('applies a security event once: a replayed jti is acknowledged and ignored', async () => {
    const account = '300000000000000000004';
    // The first delivery names an account nobody has connected yet; the replay would match one.
    const first = await google.sendSecurityEvent(account, 'sessions-revoked');
    expect(first.status).toBe(202);
    expect((await securityEvents()).at(-1)).toMatchObject({ event: 'sessions-revoked', jti: first.jti, connections: 0 });
    const connection = await activeConnection('risc.dan@example.com', account);

    const replay = await fetch(receiverUrl, { method: 'POST', headers: { 'content-type': 'application/secevent+jwt' }, body: first.token });
    expect(replay.status).toBe(202);
    expect(await signalCount(platform, connection.workflowId, 'invalidated')).toBe(0);
    expect((await waitForConnectionState(platform, connection.workflowId, () => true)).status).toBe('active');

    expect((await google.sendSecurityEvent(account, 'sessions-revoked')).status).toBe(202);
    await waitForConnectionState(platform, connection.workflowId, (s) => s.status === 'needs_reauth');
  });

  it('acknowledges a verification event and does nothing else', async () => {
    const eventsBefore = (await securityEvents()).length;
    const delivery = await google.sendSecurityEvent('300000000000000000005', 'verification', { state: 'stream-check' });
    expect(delivery.status).toBe(202);
    expect(await securityEvents()).toHaveLength(eventsBefore);
  });

  it('refuses a security event token older than the maximum age, audits it, and changes nothing', async () => {
    const account = '300000000000000000006';
    const connection = await activeConnection('risc.eve@example.com', account);
    const overADayAgo = Math.floor(Date.now() / 1000) - 24 * 3600 - 600;

    const stale = await google.sendSecurityEvent(account, 'tokens-revoked', { issuedAt: overADayAgo });
    expect([stale.status, JSON.parse(stale.body)]).toEqual([400, { error: 'invalid_request', message: expect.stringContaining('issued more than 86400 seconds ago') }]);
    const rejected = await platform.db.anyFirst(sql.type(z.object({ details: z.record(z.unknown()) }))`
      SELECT details FROM audit_log WHERE action = 'WebhookRejected' ORDER BY id`);
    expect(rejected.at(-1)).toEqual({ reason: 'invalid_request', check: 'too_old' });
    expect(await platform.db.oneFirst(sql.type(z.object({ count: z.number() }))`
      SELECT count(*)::int AS count FROM webhook_deliveries WHERE provider = 'google-risc' AND delivery_id = ${stale.jti}`)).toBe(0);
    expect(await signalCount(platform, connection.workflowId, 'invalidated')).toBe(0);
    expect((await waitForConnectionState(platform, connection.workflowId, () => true)).status).toBe('active');
  });

  it('does not send a connection the user has authorized again back to needs_reauth for an event issued before that', async () => {
    const account = '300000000000000000007';
    const connection = await activeConnection('risc.fay@example.com', account);
    expect((await google.sendSecurityEvent(account, 'sessions-revoked')).status).toBe(202);
    await waitForConnectionState(platform, connection.workflowId, (s) => s.status === 'needs_reauth');

    google.signInAs(account);
    try {
      expect((await connectGoogleCalendar(platform, connection.sessionToken)).status).toBe(202);
    } finally {
      google.signInAs(undefined);
    }
    await waitForConnectionState(platform, connection.workflowId, (s) => s.status === 'active');

    // Another event from before the re-authorization (a late delivery, or a capture whose jti was purged).
    const late = await google.sendSecurityEvent(account, 'tokens-revoked', { issuedAt: Math.floor(Date.now() / 1000) - 600 });
    expect(late.status).toBe(202);
    expect((await securityEvents()).at(-1)).toEqual({ event: 'tokens-revoked', jti: late.jti, reason: null, connections: 1, ignored: 'authorized_after_event' });
    expect(await signalCount(platform, connection.workflowId, 'invalidated')).toBe(1);
    expect((await waitForConnectionState(platform, connection.workflowId, () => true)).status).toBe('active');

    // An event issued after the re-authorization still counts.
    expect((await google.sendSecurityEvent(account, 'tokens-revoked')).status).toBe(202);
    await waitForConnectionState(platform, connection.workflowId, (s) => s.status === 'needs_reauth' && s.lastError?.kind === 'tokens-revoked');
  });
});
