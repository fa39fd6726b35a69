import { randomUUID } from 'node:crypto';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Activities } from '../../activities';
import type { PlatformServices } from '../../platform/services';
import { runActivity, startTokenWriteBed, type TokenWriteBed } from '../helpers/token-writes';

/**
 * Every authorization that fails is on record once (real Postgres, MockActivityEnvironment): a first one
 * that fails the connection, one that fails while a newer code was bringing a failed connection back, and
 * a re-consent that leaves the connection's grant as it was. A retried activity writes no second row.
 */
describe('failed authorizations in the audit log', () => {
  let bed: TokenWriteBed<'google'>;
  let services: PlatformServices;
  let activities: Activities;

  beforeAll(async () => {
    bed = await startTokenWriteBed({ fakes: { google: {} } });
    ({ services, activities } = bed);
  });

  afterAll(() => bed?.close());

  const failures = (connectionId: string) =>
    services.db.any(sql.type(z.object({ actorType: z.string(), details: z.record(z.unknown()) }))`
      SELECT actor_type AS "actorType", details FROM audit_log
      WHERE action = 'IntegrationConnect' AND outcome = 'failure' AND connection_id = ${connectionId} ORDER BY id`);
  const status = (connectionId: string) =>
    services.db.oneFirst(sql.type(z.object({ status: z.string() }))`SELECT status FROM integration_connections WHERE id = ${connectionId}`);

  it('fails a pending connection once, and audits a newer code that failed to bring it back, each once however often retried', async () => {
    const { connectionId, authorizationId } = await bed.pendingConnection('google-calendar');
    const failed = { connectionId, reason: 'AuthorizationRejected', authorizationId };
    await runActivity(activities.markConnectionFailed, [failed]);
    await runActivity(activities.markConnectionFailed, [failed], { attempt: 2 });
    expect(await status(connectionId)).toBe('failed');
    expect(await failures(connectionId)).toEqual([{ actorType: 'system', details: { reason: 'AuthorizationRejected', reauthorization: false, authorizationId } }]);

    const newer = randomUUID();
    await runActivity(activities.markConnectionFailed, [{ ...failed, authorizationId: newer }]);
    await runActivity(activities.markConnectionFailed, [{ ...failed, authorizationId: newer }], { attempt: 2 });
    expect(await status(connectionId)).toBe('failed');
    expect((await failures(connectionId)).map((row) => row.details.authorizationId)).toEqual([authorizationId, newer]);
  });

  it('audits a failed re-consent once and leaves the connection as it was', async () => {
    const { connectionId } = await bed.activeConnection('google-calendar');
    const reconsent = { connectionId, reason: 'AuthorizationRejected', authorizationId: randomUUID(), reauthorization: true };
    await runActivity(activities.auditFailedAuthorization, [reconsent]);
    await runActivity(activities.auditFailedAuthorization, [reconsent], { attempt: 2 });
    expect(await status(connectionId)).toBe('active');
    expect(await failures(connectionId)).toEqual([{ actorType: 'system', details: { reason: 'AuthorizationRejected', reauthorization: true, authorizationId: reconsent.authorizationId } }]);
  });
});
