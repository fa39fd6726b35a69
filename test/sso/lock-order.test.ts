import pg from 'pg';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { findPortalRequestSession } from '../../db/queries/portal-sessions';
import { lockPmSessionForSso } from '../../db/queries/portal-sso';
import { signOutPortalSession } from '../../platform/portal/sessions';
import { hashBearerValue, randomToken } from '../../platform/secrets';
import { applyMappedPortalRoles } from '../../platform/sso/portal-roles';
import { eventually } from '../helpers/eventually';
import { startRealityTestServers, type RealityTestServers } from '../helpers/reality';

/**
 * One lock order everywhere: the PM user, then the PM session, then the portal session. Disabling a user
 * takes them in that order (platform/sso/user-administration.ts); an SSO sign-in, the portal's
 * per-request session sync and its sign-out (which ends the PM session with the portal session) must
 * not hold a later one while waiting for an earlier one, or the two deadlock. Each test plays the
 * disablement by hand, one statement at a time, on its own connection.
 */
describe('lock order between disablement, SSO sign-in, portal requests, sign-out and role mapping', () => {
  let servers: RealityTestServers;
  const connections: pg.Client[] = [];

  beforeAll(async () => {
    servers = await startRealityTestServers();
  });

  afterAll(async () => {
    await Promise.all(connections.map((connection) => connection.end().catch(() => undefined)));
    await servers?.close();
  });

  /** A transaction on a connection of its own, which holds its locks while the other side runs. */
  async function beginOwnTransaction(): Promise<pg.Client> {
    const connection = new pg.Client({ connectionString: servers.config.databaseUrl! });
    connections.push(connection);
    await connection.connect();
    await connection.query('BEGIN');
    return connection;
  }

  /** The first steps of disableUser, on a connection of its own. */
  async function beginDisablement(pmUserId: string): Promise<pg.Client> {
    const disabling = await beginOwnTransaction();
    // A wait that would be a deadlock fails fast instead of waiting for deadlock_timeout.
    await disabling.query("SET LOCAL lock_timeout = '200ms'");
    await disabling.query('SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [pmUserId]);
    await disabling.query('UPDATE users SET disabled_at = now() WHERE id = $1', [pmUserId]);
    return disabling;
  }

  /** Until some backend of the test database waits for a row lock. */
  const someoneWaitsForALock = () =>
    eventually(
      () =>
        servers.api.db.oneFirst(sql.type(z.object({ waiting: z.boolean() }))`
          SELECT count(*) > 0 AS waiting FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`),
      10_000,
      'a lock wait',
    );

  /** A portal session opened from the PM session, with a token the test knows; both last used minutes ago. */
  async function portalSessionOf(pmUserId: string, pmSessionId: string): Promise<{ token: string; portalSessionId: string }> {
    const token = randomToken();
    const portalSessionId = await servers.api.db.oneFirst(sql.type(z.object({ id: z.string() }))`
      WITH account AS (
        INSERT INTO portal_users (pm_user_id, email, display_name)
        SELECT id, email, display_name FROM users WHERE id = ${pmUserId}
        ON CONFLICT (pm_user_id) DO UPDATE SET updated_at = now()
        RETURNING id
      )
      INSERT INTO portal_sessions (portal_user_id, token_hash, pm_session_id, roles_version, method, expires_at, last_seen_at)
      SELECT account.id, ${hashBearerValue(token)}, ${pmSessionId}, u.roles_version, 'sso_token', now() + interval '1 hour', now() - interval '5 minutes'
      FROM account, users u WHERE u.id = ${pmUserId}
      RETURNING id`);
    await servers.api.db.query(sql.unsafe`UPDATE user_sessions SET last_seen_at = now() - interval '5 minutes' WHERE id = ${pmSessionId}`);
    return { token, portalSessionId };
  }

  it('an SSO sign-in waits for the user row before it holds the PM session, so a disablement goes through', async () => {
    const pm = await servers.signInPmUser();
    const disablement = await beginDisablement(pm.user.id);
    const signIn = servers.db.transaction((transaction) => lockPmSessionForSso(transaction, pm.sessionId, pm.user.id, servers.config.sso.sessionIdleSeconds));
    await someoneWaitsForALock();

    // disableUser's next step: ending the PM sessions. A sign-in holding the session row would block it.
    await disablement.query("UPDATE user_sessions SET revoked_at = now(), ended_reason = 'user_disabled' WHERE id = $1", [pm.sessionId]);
    await disablement.query('COMMIT');
    expect(await signIn).toBe('user_disabled');
  });

  it("a portal request touches the PM session before the portal session, so a disablement ending both goes through", async () => {
    const pm = await servers.signInPmUser();
    const { token, portalSessionId } = await portalSessionOf(pm.user.id, pm.sessionId);
    const disablement = await beginDisablement(pm.user.id);
    await disablement.query("UPDATE user_sessions SET revoked_at = now(), ended_reason = 'user_disabled' WHERE id = $1", [pm.sessionId]);
    const request = findPortalRequestSession(servers.db, hashBearerValue(token), servers.config.sso.sessionIdleSeconds);
    await someoneWaitsForALock();

    // disableUser's last step: ending the portal sessions. A request holding the portal session row would block it.
    await disablement.query("UPDATE portal_sessions SET ended_at = now(), ended_reason = 'user_disabled' WHERE id = $1", [portalSessionId]);
    await disablement.query('COMMIT');
    await expect(request).resolves.toMatchObject({ id: portalSessionId });
    // The next request sees the end.
    expect(await findPortalRequestSession(servers.db, hashBearerValue(token), servers.config.sso.sessionIdleSeconds)).toBeNull();
  });

  it('a portal sign-out takes the PM session before the portal session, so a disablement ending both goes through', async () => {
    const pm = await servers.signInPmUser();
    const { token, portalSessionId } = await portalSessionOf(pm.user.id, pm.sessionId);
    const disablement = await beginDisablement(pm.user.id);
    await disablement.query("UPDATE user_sessions SET revoked_at = now(), ended_reason = 'user_disabled' WHERE id = $1", [pm.sessionId]);
    const signOut = signOutPortalSession(servers.db, servers.api.audit, token, { ip: '127.0.0.1', userAgent: 'lock-order test' });
    await someoneWaitsForALock();

    // A sign-out holding the portal session row would block this, and the disablement would fail.
    await disablement.query("UPDATE portal_sessions SET ended_at = now(), ended_reason = 'user_disabled' WHERE id = $1", [portalSessionId]);
    await disablement.query('COMMIT');
    // The disablement ended both first: the sign-out finds nothing left to end, and audits nothing.
    expect(await signOut).toBeNull();
    const signOutRows = (await servers.auditRows('SsoLogout')).filter((row) => row.details.portalSessionId === portalSessionId && row.actorType === 'user');
    expect(signOutRows).toEqual([]);
  });

  it("roles applied after waiting for the portal account's lock are mapped from the PM roles committed meanwhile", async () => {
    const pm = await servers.signInPmUser({ roles: ['viewer'] });
    await portalSessionOf(pm.user.id, pm.sessionId);
    // Another application of the mapping holds the account.
    const other = await beginOwnTransaction();
    await other.query('SELECT 1 FROM portal_users WHERE pm_user_id = $1 FOR UPDATE', [pm.user.id]);
    const applying = applyMappedPortalRoles(servers.db, servers.api.audit, pm.user.id, 'request');
    await someoneWaitsForALock();

    await servers.api.db.query(sql.unsafe`UPDATE users SET roles = '{owner}', roles_version = roles_version + 1 WHERE id = ${pm.user.id}`);
    await other.query('COMMIT');
    expect(await applying).toMatchObject({ roles: ['listing_editor', 'portal_admin'], changed: true });
  });

  it('a portal request that still loses a deadlock is asked to retry (503), never answered 500', async () => {
    const pm = await servers.signInPmUser();
    const { token } = await portalSessionOf(pm.user.id, pm.sessionId);
    // Every touch of this PM session is picked as a deadlock's victim, through all of slonik's retries.
    await servers.api.db.query(sql.unsafe`
      CREATE FUNCTION lose_deadlock() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'simulated deadlock' USING ERRCODE = '40P01'; END $$`);
    await servers.api.db.query(sql.unsafe`
      CREATE TRIGGER lose_deadlock BEFORE UPDATE OF last_seen_at ON user_sessions FOR EACH ROW
      WHEN (NEW.id = ${sql.literalValue(pm.sessionId)}::uuid) EXECUTE FUNCTION lose_deadlock()`);
    try {
      const response = await fetch(`${servers.url}/api/v1/portal/me`, { headers: { authorization: `Bearer ${token}` } });
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBeTruthy();
      expect(await response.json()).toMatchObject({ error: 'temporarily_unavailable' });
    } finally {
      await servers.api.db.query(sql.unsafe`DROP TRIGGER lose_deadlock ON user_sessions`);
      await servers.api.db.query(sql.unsafe`DROP FUNCTION lose_deadlock()`);
    }
    expect((await fetch(`${servers.url}/api/v1/portal/me`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });
});
