import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { hashBearerValue } from '../../platform/secrets';
import { GOOGLE_TEST_CLIENT, startTestPlatform, type TestPlatform } from '../helpers/platform';

/** A callback that cannot be trusted gets a clear 4xx, is audited, and starts nothing. */
describe('Google Calendar callback rejects bad input', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  let ann: { userId: string; sessionToken: string };
  let bob: { userId: string; sessionToken: string };

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, google });
    ann = await platform.signUp('ann@example.com');
    bob = await platform.signUp('bob@example.com');
  });

  afterAll(async () => {
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  let workflowsBefore: number;
  beforeEach(async () => {
    workflowsBefore = await countConnectionWorkflows();
  });

  async function countConnectionWorkflows(): Promise<number> {
    const { count } = await temporal.client.workflow.count(`WorkflowType = 'connectionWorkflow'`);
    return count;
  }

  /** Our redirect to Google, and Google's redirect back: the callback URL a browser would be sent to. */
  async function authorizeAs(user: { sessionToken: string }): Promise<URL> {
    const auth = await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/auth`, {
      headers: { authorization: `Bearer ${user.sessionToken}` },
      redirect: 'manual',
    });
    const consent = await fetch(auth.headers.get('location')!, { redirect: 'manual' });
    return new URL(consent.headers.get('location')!);
  }

  async function callback(user: { sessionToken: string } | undefined, query: Record<string, string>) {
    const url = new URL(`${platform.apiUrl}/api/v1/integrations/google-calendar/callback`);
    url.search = new URLSearchParams(query).toString();
    const response = await fetch(url, { headers: user ? { authorization: `Bearer ${user.sessionToken}` } : {} });
    return { status: response.status, body: (await response.json()) as { error: string; message: string } };
  }

  async function expectNothingStarted(): Promise<void> {
    const connections = await platform.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM integration_connections`);
    expect(connections).toBe(0);
    expect(await countConnectionWorkflows()).toBe(workflowsBefore);
  }

  const rejections = (reason: string) =>
    platform.db.oneFirst(sql.type(z.object({ count: z.number() }))`
      SELECT count(*)::int AS count FROM audit_log WHERE action = 'IntegrationCallbackRejected' AND details->>'reason' = ${reason}`);

  it('answers 400 missing_state when the state is absent', async () => {
    const callbackUrl = await authorizeAs(ann);
    const result = await callback(ann, { code: callbackUrl.searchParams.get('code')! });
    expect(result).toMatchObject({ status: 400, body: { error: 'missing_state' } });
    expect(await rejections('missing_state')).toBe(1);
    await expectNothingStarted();
  });

  it('answers 400 invalid_state for a state we never issued', async () => {
    const result = await callback(ann, { code: 'forged-code', state: 'x'.repeat(43) });
    expect(result).toMatchObject({ status: 400, body: { error: 'invalid_state' } });
    await expectNothingStarted();
  });

  it('answers 403 foreign_state when another user presents the state, and leaves it usable for its owner', async () => {
    const callbackUrl = await authorizeAs(ann);
    const query = Object.fromEntries(callbackUrl.searchParams);
    const result = await callback(bob, query);
    expect(result).toMatchObject({ status: 403, body: { error: 'foreign_state' } });
    expect(await rejections('foreign_state')).toBe(1);
    await expectNothingStarted();

    const consumed = await platform.db.oneFirst(sql.type(z.object({ consumedAt: z.number().nullable() }))`
      SELECT consumed_at AS "consumedAt" FROM integration_authorizations WHERE state_hash = ${hashBearerValue(query.state!)}`);
    expect(consumed).toBeNull();
  });

  it('answers 401 without a session', async () => {
    const callbackUrl = await authorizeAs(ann);
    const result = await callback(undefined, Object.fromEntries(callbackUrl.searchParams));
    expect(result).toMatchObject({ status: 401, body: { error: 'unauthenticated' } });
    await expectNothingStarted();
  });

  it('answers 400 state_expired once the state has outlived its lifetime', async () => {
    const callbackUrl = await authorizeAs(ann);
    const state = callbackUrl.searchParams.get('state')!;
    await platform.db.query(sql.unsafe`
      UPDATE integration_authorizations SET expires_at = now() - interval '1 second' WHERE state_hash = ${hashBearerValue(state)}`);
    const result = await callback(ann, Object.fromEntries(callbackUrl.searchParams));
    expect(result).toMatchObject({ status: 400, body: { error: 'state_expired' } });
    await expectNothingStarted();
  });

  it('answers 400 authorization_denied when the user refused at Google', async () => {
    const callbackUrl = await authorizeAs(ann);
    const result = await callback(ann, { state: callbackUrl.searchParams.get('state')!, error: 'access_denied' });
    expect(result).toMatchObject({ status: 400, body: { error: 'authorization_denied' } });
    await expectNothingStarted();
  });

  it('answers 400 missing_code or invalid_request for a missing or oversized code', async () => {
    const callbackUrl = await authorizeAs(ann);
    const state = callbackUrl.searchParams.get('state')!;
    expect(await callback(ann, { state })).toMatchObject({ status: 400, body: { error: 'missing_code' } });
    expect(await callback(ann, { state, code: 'c'.repeat(5000) })).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    await expectNothingStarted();
  });

  it('answers 400 state_already_used to a replayed callback and starts exactly one workflow', async () => {
    const callbackUrl = await authorizeAs(ann);
    const query = Object.fromEntries(callbackUrl.searchParams);
    const [first, second] = await Promise.all([callback(ann, query), callback(ann, query)]);
    const statuses = [first.status, second.status].sort();
    expect(statuses).toEqual([202, 400]);
    expect([first, second].find((result) => result.status === 400)!.body.error).toBe('state_already_used');
    const replay = await callback(ann, query);
    expect(replay).toMatchObject({ status: 400, body: { error: 'state_already_used' } });
    expect(await countConnectionWorkflows()).toBe(workflowsBefore + 1);
  });
});
