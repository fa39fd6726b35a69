import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { upsertGrant } from '../../db/queries/oauth-grants';
import { registerClient } from '../../platform/oauth-server/clients';
import { ensureHousekeepingSchedule, HOUSEKEEPING_SCHEDULE_ID } from '../../worker/schedules';
import type { housekeepingWorkflow } from '../../workflows/housekeeping';
import { GOOGLE_TEST_CLIENT, startTestPlatform, type TestPlatform } from '../helpers/platform';

/** Expired rows go a day after their expiry, by an hourly schedule; live rows stay. */
describe('housekeeping', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, google });
  });

  afterAll(async () => {
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  const count = (table: string) =>
    platform.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM ${sql.identifier([table])}`);

  /** One row that expired two days ago and one that is still live, in every table housekeeping looks after. */
  async function seedExpiredAndLiveRows(): Promise<void> {
    const { userId } = await platform.signUp(`housekeeping-${randomUUID()}@example.com`);
    const { client } = await registerClient(platform.db, {
      name: 'Housekeeping client',
      tokenEndpointAuthMethod: 'client_secret_basic',
      redirectUris: ['https://client.example/callback'],
      grantTypes: ['authorization_code', 'refresh_token'],
      scopes: ['properties:read'],
      kind: 'third_party',
      registeredBy: 'admin',
    });
    const grantId = await upsertGrant(platform.db, userId, client.id, ['properties:read']);
    for (const expiresAt of [sql.fragment`now() - interval '2 days'`, sql.fragment`now() + interval '1 hour'`]) {
      const family = randomUUID();
      await platform.db.query(sql.unsafe`
        INSERT INTO integration_authorizations (user_id, provider, state_hash, redirect_uri, expires_at)
        VALUES (${userId}, 'google-calendar', ${randomUUID()}, 'https://app.example/callback', ${expiresAt})`);
      await platform.db.query(sql.unsafe`
        INSERT INTO oauth_authorization_requests (client_id, user_id, redirect_uri, scopes, code_challenge, csrf_hash, expires_at)
        VALUES (${client.id}, ${userId}, 'https://client.example/callback', '{properties:read}', 'challenge', ${randomUUID()}, ${expiresAt})`);
      await platform.db.query(sql.unsafe`
        INSERT INTO oauth_authorization_codes (code_hash, client_id, user_id, grant_id, family_id, redirect_uri, scopes, code_challenge, expires_at)
        VALUES (${randomUUID()}, ${client.id}, ${userId}, ${grantId}, ${family}, 'https://client.example/callback', '{properties:read}', 'challenge', ${expiresAt})`);
      await platform.db.query(sql.unsafe`
        INSERT INTO oauth_access_tokens (jti, client_id, user_id, grant_id, family_id, scopes, issued_at, expires_at)
        VALUES (${randomUUID()}, ${client.id}, ${userId}, ${grantId}, ${family}, '{properties:read}', now() - interval '3 days', ${expiresAt})`);
      await platform.db.query(sql.unsafe`
        INSERT INTO oauth_refresh_tokens (token_hash, family_id, client_id, user_id, grant_id, scopes, expires_at)
        VALUES (${randomUUID()}, ${family}, ${client.id}, ${userId}, ${grantId}, '{properties:read}', ${expiresAt})`);
      await platform.db.query(sql.unsafe`
        INSERT INTO user_sessions (user_id, token_hash, expires_at) VALUES (${userId}, ${randomUUID()}, ${expiresAt})`);
    }
    await platform.db.query(sql.unsafe`
      INSERT INTO user_login_failures (email, failures, last_failure) VALUES
        ('forgotten@example.com', 2, now() - interval '2 days'), ('recent@example.com', 2, now())`);
    await platform.db.query(sql.unsafe`
      INSERT INTO portal_login_failures (email, failures, last_failure) VALUES
        ('forgotten@example.com', 2, now() - interval '2 days'), ('recent@example.com', 2, now())`);
    const portalUserId = await platform.db.oneFirst(sql.type(z.object({ id: z.string() }))`
      INSERT INTO portal_users (pm_user_id, email, display_name) VALUES (${userId}, 'portal@example.com', 'Portal') RETURNING id`);
    // Expired two days ago, and ended two days ago: both go. Ended an hour ago, and live: both stay.
    for (const [expiresAt, endedAt] of [
      [sql.fragment`now() - interval '2 days'`, null],
      [sql.fragment`now() + interval '1 hour'`, sql.fragment`now() - interval '2 days'`],
      [sql.fragment`now() + interval '1 hour'`, sql.fragment`now() - interval '1 hour'`],
      [sql.fragment`now() + interval '1 hour'`, null],
    ] as const) {
      await platform.db.query(sql.unsafe`
        INSERT INTO portal_sessions (portal_user_id, token_hash, method, expires_at, ended_at, ended_reason)
        VALUES (${portalUserId}, ${randomUUID()}, 'password', ${expiresAt}, ${endedAt}, ${endedAt === null ? null : 'logout'})`);
    }
    // Replay guards go an hour after their token expired.
    for (const expiresAt of [sql.fragment`now() - interval '2 hours'`, sql.fragment`now() - interval '30 minutes'`]) {
      await platform.db.query(sql.unsafe`
        INSERT INTO sso_token_redemptions (jti, user_id, expires_at) VALUES (${randomUUID()}, ${userId}, ${expiresAt})`);
      await platform.db.query(sql.unsafe`
        INSERT INTO backchannel_logout_receipts (receiver, jti, expires_at) VALUES ('reality-server', ${randomUUID()}, ${expiresAt})`);
    }
    await platform.db.query(sql.unsafe`
      INSERT INTO webhook_deliveries (provider, delivery_id, received_at) VALUES
        ('google-calendar', ${randomUUID()}, now() - interval '31 days'), ('google-calendar', ${randomUUID()}, now() - interval '29 days')`);
  }

  it('deletes what expired more than a day ago and keeps the rest', async () => {
    await seedExpiredAndLiveRows();
    const expectedDeletions: Record<string, number> = {
      integration_authorizations: 1,
      oauth_authorization_requests: 1,
      oauth_authorization_codes: 1,
      oauth_access_tokens: 1,
      oauth_refresh_tokens: 1,
      portal_sessions: 2,
      user_sessions: 1,
      user_login_failures: 1,
      portal_login_failures: 1,
      sso_token_redemptions: 1,
      backchannel_logout_receipts: 1,
      webhook_deliveries: 1,
    };
    const tables = Object.keys(expectedDeletions);
    const before = Object.fromEntries(await Promise.all(tables.map(async (table) => [table, await count(table)] as const)));

    const deleted = await platform.client.workflow.execute<typeof housekeepingWorkflow>('housekeepingWorkflow', {
      workflowId: `housekeeping-test-${randomUUID()}`,
      taskQueue: platform.config.temporal.taskQueue,
    });

    expect(deleted).toEqual(expectedDeletions);
    for (const table of tables) expect(await count(table), table).toBe(before[table]! - expectedDeletions[table]!);
    // The signed-in user's own session is live and stays.
    expect(await count('user_sessions')).toBeGreaterThanOrEqual(2);
  });

  it('ensures one hourly schedule, however many workers start', async () => {
    await ensureHousekeepingSchedule(platform.client, platform.config.temporal.taskQueue);
    await ensureHousekeepingSchedule(platform.client, platform.config.temporal.taskQueue);
    const schedule = await platform.client.schedule.getHandle(HOUSEKEEPING_SCHEDULE_ID).describe();
    expect(schedule.spec.intervals).toHaveLength(1);
    expect(schedule.spec.intervals![0]!.every).toBe(3600 * 1000);
    expect(schedule.action).toMatchObject({ type: 'startWorkflow', workflowType: 'housekeepingWorkflow', taskQueue: platform.config.temporal.taskQueue });
  });
});
