import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { BACKCHANNEL_LOGOUT_EVENT } from '../../platform/sso/logout-tokens';
import { pmSessionEndedSignal, rolesChangedSignal, ssoSessionStatusQuery } from '../../workflows/sso-session-messages';
import { historyPayloadTexts } from '../helpers/history';
import type { TestPlatform } from '../helpers/platform';
import {
  pmLogout,
  portalLogout,
  readPmSession,
  readPortalSession,
  receiversEndSessions,
  SSO_BACKCHANNEL_DEADLINE_SECONDS,
  SSO_IDLE_SECONDS,
  SSO_LOGOUT_TOKEN_SECONDS,
  startSsoPair,
  startSsoSessionTestPlatform,
  useSessions,
  waitForSsoSessionState,
  workflowLogoutAudits,
  type LogoutReceiver,
  type SsoSessionTestPlatform,
} from '../helpers/sso-sessions';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';

const MINUTE = 60_000;

/**
 * The SSO session workflow with its real activities, the worker and Postgres on the time-skipping
 * server. Two scripted receivers stand in for the reality-server's and the api-server's back-channel
 * logout endpoints (OAUTH_ISSUER and REALITY_PUBLIC_URL point at them); when they accept a token they
 * end the session it names, as the real receivers do. A case scripts and reads only its own pair's
 * deliveries, so another case's late or retried delivery cannot change what it sees. Every case ends
 * its workflow.
 */
describe('SSO session workflow (time-skipping, real activities)', { timeout: 120_000 }, () => {
  let temporal: TestWorkflowEnvironment;
  let clock: SimulatedClock;
  let setup: SsoSessionTestPlatform;
  let platform: TestPlatform;
  let portal: LogoutReceiver;
  let apiServer: LogoutReceiver;

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    clock = await SimulatedClock.of(temporal);
    setup = await startSsoSessionTestPlatform(temporal, clock);
    ({ platform, portal, apiServer } = setup);
  });

  afterAll(async () => {
    await setup?.close();
    await temporal?.teardown();
  });

  it('PM logout: the portal gets a logout token signed by the authorization server, and the workflow completes', async () => {
    const { pair, handle } = await startSsoPair(platform, clock);
    receiversEndSessions(setup, pair);
    await pmLogout(platform, pair, handle);

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'pm', backchannelDelivered: true });
    const received = portal.receivedFor(pair);
    const [delivery] = received;
    expect(received).toHaveLength(1);
    expect(delivery).toMatchObject({ path: '/sso/backchannel-logout', contentType: 'application/x-www-form-urlencoded', typ: 'logout+jwt', status: 200 });
    expect(delivery!.verificationError).toBeUndefined();
    expect(delivery!.claims).toEqual({
      iss: platform.config.authorizationServer.issuer,
      aud: platform.config.sso.portal.clientId,
      sub: pair.pmUserId,
      sid: pair.pmSessionId,
      events: { [BACKCHANNEL_LOGOUT_EVENT]: {} },
      jti: expect.any(String),
      iat: expect.any(Number),
      exp: expect.any(Number),
    });
    // SSO_LOGOUT_TOKEN_TTL_SECONDS
    expect(delivery!.claims!.exp! - delivery!.claims!.iat!).toBe(SSO_LOGOUT_TOKEN_SECONDS);
    expect(await readPortalSession(platform.db, pair)).toMatchObject({ reason: 'pm_logout', endedAt: expect.any(Number) });
    expect(apiServer.receivedFor(pair)).toEqual([]);
    // The receiver ended the portal session and audits it; the workflow ended nothing itself: no row of its own.
    expect(await workflowLogoutAudits(platform.db, pair)).toEqual([]);
    expect(await handle.query(ssoSessionStatusQuery)).toMatchObject({ status: 'ended', deliveries: [expect.objectContaining({ receiver: 'reality-server', delivered: true, attempts: 1, status: 200 })] });

    // Ids, times and reasons only: no token of the run is in the workflow's history.
    const texts = await historyPayloadTexts(handle);
    for (const secret of [delivery!.token, ...pair.secrets]) expect(texts.some((text) => text.includes(secret))).toBe(false);
  });

  it('sends the portal client’s logout tokens to its registered backchannel_logout_uri', async () => {
    const clientId = platform.config.sso.portal.clientId;
    await platform.db.query(sql.unsafe`
      INSERT INTO oauth_clients (id, name, client_type, token_endpoint_auth_method, grant_types, scopes, registered_by, backchannel_logout_uri)
      VALUES (${clientId}, 'Reality Portal', 'public', 'none', '{authorization_code}', '{openid}', 'admin', ${`${portal.url}/registered/logout`})
      ON CONFLICT (id) DO UPDATE SET backchannel_logout_uri = EXCLUDED.backchannel_logout_uri`);
    try {
      const { pair, handle } = await startSsoPair(platform, clock);
      receiversEndSessions(setup, pair);
      await pmLogout(platform, pair, handle);
      expect(await handle.result()).toMatchObject({ backchannelDelivered: true });
      expect(portal.receivedFor(pair).map((token) => token.path)).toEqual(['/registered/logout']);
    } finally {
      await platform.db.query(sql.unsafe`UPDATE oauth_clients SET backchannel_logout_uri = NULL WHERE id = ${clientId}`);
    }
  });

  it('portal logout: the api-server gets a logout token signed with the reality-server’s keys', async () => {
    const { pair, handle } = await startSsoPair(platform, clock);
    receiversEndSessions(setup, pair);
    await portalLogout(platform, pair, handle);

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'portal', backchannelDelivered: true });
    const received = apiServer.receivedFor(pair);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ path: '/oauth/backchannel-logout', typ: 'logout+jwt', status: 200 });
    expect(received[0]!.claims).toMatchObject({
      iss: platform.config.sso.portal.publicUrl,
      aud: platform.config.authorizationServer.issuer,
      sub: pair.pmUserId,
      sid: pair.pmSessionId,
      events: { [BACKCHANNEL_LOGOUT_EVENT]: {} },
    });
    expect(received[0]!.claims).not.toHaveProperty('nonce');
    expect(await readPmSession(platform.db, pair)).toMatchObject({ reason: 'portal_logout', endedAt: expect.any(Number) });
    const owners = await platform.db.anyFirst(sql.type(z.object({ owner: z.string() }))`SELECT DISTINCT owner FROM oauth_signing_keys ORDER BY owner`);
    expect(owners).toContain('reality-server');
    expect(portal.receivedFor(pair)).toEqual([]);
  });

  it('a portal sign-out whose signal was lost reaches the api-server at the next check', async () => {
    const { pair, handle, startedAt } = await startSsoPair(platform, clock);
    receiversEndSessions(setup, pair);
    await platform.db.query(sql.unsafe`UPDATE portal_sessions SET ended_at = now(), ended_reason = 'logout' WHERE id = ${pair.portalSessionId}`);

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'portal', backchannelDelivered: true });
    expect(apiServer.deliveredFor(pair)[0]!.receivedAt).toBeLessThanOrEqual(startedAt + SSO_IDLE_SECONDS * 1000 + MINUTE);
    expect(await readPmSession(platform.db, pair)).toMatchObject({ reason: 'portal_logout' });
  });

  it('a pair that both apps ended without telling the workflow completes at the next check, with nothing to deliver', async () => {
    const { pair, handle } = await startSsoPair(platform, clock);
    // A PM logout whose signal was lost, and the portal's next request ending its session (session sync (a)).
    await platform.db.query(sql.unsafe`UPDATE user_sessions SET revoked_at = now(), ended_reason = 'logout' WHERE id = ${pair.pmSessionId}`);
    await platform.db.query(sql.unsafe`UPDATE portal_sessions SET ended_at = now(), ended_reason = 'pm_session_ended' WHERE id = ${pair.portalSessionId}`);

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'pm' });
    expect(portal.receivedFor(pair)).toEqual([]);
    expect(apiServer.receivedFor(pair)).toEqual([]);
    expect(await readPortalSession(platform.db, pair)).toMatchObject({ reason: 'pm_session_ended' });
    expect(await workflowLogoutAudits(platform.db, pair)).toEqual([]);
  });

  it('a portal session that a new sign-in in its browser replaced: the workflow completes at the next check and leaves the PM session be', async () => {
    const { pair, handle } = await startSsoPair(platform, clock);
    await platform.db.query(sql.unsafe`UPDATE portal_sessions SET ended_at = now(), ended_reason = 'replaced' WHERE id = ${pair.portalSessionId}`);

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'replaced' });
    expect(await readPmSession(platform.db, pair)).toMatchObject({ endedAt: null, reason: null });
    expect(portal.receivedFor(pair)).toEqual([]);
    expect(apiServer.receivedFor(pair)).toEqual([]);
    expect(await workflowLogoutAudits(platform.db, pair)).toEqual([]);
  });

  it('retries a delivery that fails at first, with growing pauses, until it lands', async () => {
    const { pair, handle } = await startSsoPair(platform, clock);
    receiversEndSessions(setup, pair);
    portal.answer(pair, [503, 503, 503]);
    await pmLogout(platform, pair, handle);

    expect(await handle.result()).toMatchObject({ backchannelDelivered: true });
    const received = portal.receivedFor(pair);
    expect(received.map((token) => token.status)).toEqual([503, 503, 503, 200]);
    // Each attempt signs its own token (a new jti), after a pause that doubles: at least 1 s, 2 s, 4 s
    // (only lower bounds: a loaded machine adds its own delay to each).
    expect(new Set(received.map((token) => token.claims!.jti)).size).toBe(4);
    const pauses = received.slice(1).map((token, index) => token.receivedAt - received[index]!.receivedAt);
    pauses.forEach((pause, index) => expect(pause).toBeGreaterThanOrEqual(1000 * 2 ** index));
    expect(pauses[2]).toBeGreaterThan(pauses[0]!);
    expect(await readPortalSession(platform.db, pair)).toMatchObject({ reason: 'pm_logout' });
    expect((await handle.query(ssoSessionStatusQuery)).deliveries).toEqual([expect.objectContaining({ receiver: 'reality-server', delivered: true, attempts: 4, status: 200 })]);
    expect(await workflowLogoutAudits(platform.db, pair)).toEqual([]);
  });

  it('a refused logout token (400) is not retried, and the portal session is ended directly', async () => {
    const { pair, handle } = await startSsoPair(platform, clock);
    portal.answer(pair, [400]);
    await pmLogout(platform, pair, handle);

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'pm', backchannelDelivered: false });
    expect(portal.receivedFor(pair).map((token) => token.status)).toEqual([400]);
    expect(await readPortalSession(platform.db, pair)).toMatchObject({ reason: 'backchannel_refused', endedAt: expect.any(Number) });
    expect(await workflowLogoutAudits(platform.db, pair)).toEqual([
      {
        outcome: 'failure',
        actorType: 'system',
        details: expect.objectContaining({ initiatedBy: 'pm', receiver: 'reality-server', delivery: 'refused', attempts: 1, status: 400, endedHere: ['portal'] }),
      },
    ]);
    expect((await handle.query(ssoSessionStatusQuery)).lastError).toMatchObject({ kind: 'BackchannelLogoutRefused' });
  });

  it('past the delivery deadline, the portal session is ended directly: it never outlives its PM session', async () => {
    const { pair, handle } = await startSsoPair(platform, clock);
    portal.answer(pair, Array.from({ length: 1000 }, () => 503));
    await pmLogout(platform, pair, handle);

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'pm', backchannelDelivered: false });
    // Retried with backoff (at most 5 minutes apart) until the next attempt would pass the deadline.
    const received = portal.receivedFor(pair);
    expect(received.length).toBeGreaterThan(4);
    // Every token was still valid when it arrived, however long the pause before it: the receiver was unavailable, not refusing.
    expect(received.flatMap((token) => token.verificationError ?? [])).toEqual([]);
    const span = received.at(-1)!.receivedAt - received[0]!.receivedAt;
    expect(span).toBeLessThanOrEqual(SSO_BACKCHANNEL_DEADLINE_SECONDS * 1000);
    expect(span).toBeGreaterThanOrEqual((SSO_BACKCHANNEL_DEADLINE_SECONDS - 300) * 1000);
    expect(await readPortalSession(platform.db, pair)).toMatchObject({ reason: 'backchannel_undelivered', endedAt: expect.any(Number) });
    const [audit] = await workflowLogoutAudits(platform.db, pair);
    expect(audit).toMatchObject({ outcome: 'failure', details: { receiver: 'reality-server', delivery: 'undelivered', status: 503, attempts: received.length } });
  });

  it('past the delivery deadline to the api-server, the PM session is ended directly', async () => {
    const { pair, handle } = await startSsoPair(platform, clock);
    apiServer.answer(pair, Array.from({ length: 1000 }, () => 503));
    await portalLogout(platform, pair, handle);

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'portal', backchannelDelivered: false });
    expect(await readPmSession(platform.db, pair)).toMatchObject({ reason: 'portal_logout', endedAt: expect.any(Number) });
    const received = apiServer.receivedFor(pair);
    expect(received.length).toBeGreaterThan(4);
    expect(received.flatMap((token) => token.verificationError ?? [])).toEqual([]);
    expect((await workflowLogoutAudits(platform.db, pair))[0]).toMatchObject({ outcome: 'failure', details: { receiver: 'api-server', delivery: 'undelivered', endedHere: ['pm'] } });
  });

  it('idle expiry: when neither session was used for the idle time, both end', async () => {
    const { pair, handle, startedAt } = await startSsoPair(platform, clock);

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'idle_expiry' });
    const portalSession = await readPortalSession(platform.db, pair);
    const pmSession = await readPmSession(platform.db, pair);
    expect(portalSession).toMatchObject({ reason: 'idle' });
    expect(pmSession).toMatchObject({ reason: 'idle' });
    expect(portalSession.endedAt! - startedAt).toBeGreaterThanOrEqual(SSO_IDLE_SECONDS * 1000);
    expect(portalSession.endedAt! - startedAt).toBeLessThan(SSO_IDLE_SECONDS * 1000 + MINUTE);
    expect(portal.receivedFor(pair)).toEqual([]);
    expect(await workflowLogoutAudits(platform.db, pair)).toEqual([
      { outcome: 'success', actorType: 'system', details: expect.objectContaining({ initiatedBy: 'idle_expiry', endedHere: ['portal', 'pm'] }) },
    ]);
  });

  it('use of either session keeps the pair alive; the idle time counts from the later use', async () => {
    const { pair, handle, startedAt } = await startSsoPair(platform, clock);
    await clock.advance(20 * MINUTE);
    const pmUsedAt = clock.now();
    await useSessions(platform.db, pair, pmUsedAt, ['pm']);
    await clock.advance(25 * MINUTE); // past the first idle deadline
    expect(clock.now()).toBeGreaterThan(startedAt + SSO_IDLE_SECONDS * 1000);
    expect(await readPortalSession(platform.db, pair)).toMatchObject({ endedAt: null });
    const state = await handle.query(ssoSessionStatusQuery);
    expect(state).toMatchObject({ status: 'active', lastActivityAt: pmUsedAt, nextCheckAt: pmUsedAt + SSO_IDLE_SECONDS * 1000 });

    await useSessions(platform.db, pair, clock.now(), ['portal']);
    const usedAt = clock.now();
    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'idle_expiry' });
    const ended = await readPortalSession(platform.db, pair);
    expect(ended.endedAt! - usedAt).toBeGreaterThanOrEqual(SSO_IDLE_SECONDS * 1000);
    expect(ended.endedAt! - usedAt).toBeLessThan(SSO_IDLE_SECONDS * 1000 + MINUTE);
    expect(await readPmSession(platform.db, pair)).toMatchObject({ reason: 'idle' });
  });

  it("the portal session's own absolute lifetime ends only the portal session, however much it is used: the PM session lives on", async () => {
    const { pair, handle, startedAt } = await startSsoPair(platform, clock, { portalSessionMs: 50 * MINUTE });
    for (const minutes of [20, 40]) {
      await clock.advance(20 * MINUTE);
      await useSessions(platform.db, pair, startedAt + minutes * MINUTE);
    }

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'absolute_expiry' });
    const portalSession = await readPortalSession(platform.db, pair);
    expect(portalSession).toMatchObject({ reason: 'expired' });
    expect(portalSession.endedAt! - startedAt).toBeGreaterThanOrEqual(50 * MINUTE);
    expect(portalSession.endedAt! - startedAt).toBeLessThan(51 * MINUTE);
    expect(await readPmSession(platform.db, pair)).toMatchObject({ endedAt: null, reason: null });
    expect(portal.receivedFor(pair)).toEqual([]);
    expect(apiServer.receivedFor(pair)).toEqual([]);
    expect(await workflowLogoutAudits(platform.db, pair)).toEqual([
      { outcome: 'success', actorType: 'system', details: expect.objectContaining({ initiatedBy: 'absolute_expiry', endedHere: ['portal'] }) },
    ]);
  });

  it('a portal session that a request found past its own lifetime: the workflow completes at the next check without ending the PM session', async () => {
    const { pair, handle } = await startSsoPair(platform, clock);
    await platform.db.query(sql.unsafe`UPDATE portal_sessions SET ended_at = now(), ended_reason = 'expired' WHERE id = ${pair.portalSessionId}`);

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'absolute_expiry' });
    expect(await readPmSession(platform.db, pair)).toMatchObject({ endedAt: null, reason: null });
    expect(await workflowLogoutAudits(platform.db, pair)).toEqual([]);
  });

  it("the PM session's absolute expiry ends both sessions, however much they are used", async () => {
    // As the portal makes them: the portal session never outlives its PM session.
    const { pair, handle, startedAt } = await startSsoPair(platform, clock, { pmSessionMs: 50 * MINUTE, portalSessionMs: 50 * MINUTE });
    for (const minutes of [20, 40]) {
      await clock.advance(20 * MINUTE);
      await useSessions(platform.db, pair, startedAt + minutes * MINUTE);
    }

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'absolute_expiry' });
    const portalSession = await readPortalSession(platform.db, pair);
    const pmSession = await readPmSession(platform.db, pair);
    expect(portalSession).toMatchObject({ reason: 'expired' });
    expect(pmSession).toMatchObject({ reason: 'expired' });
    expect(pmSession.endedAt! - startedAt).toBeGreaterThanOrEqual(50 * MINUTE);
    expect(pmSession.endedAt! - startedAt).toBeLessThan(51 * MINUTE);
    expect(await workflowLogoutAudits(platform.db, pair)).toEqual([
      { outcome: 'success', actorType: 'system', details: expect.objectContaining({ initiatedBy: 'absolute_expiry', endedHere: ['portal', 'pm'] }) },
    ]);
  });

  it('pushes a role change into the portal session; a change whose signal was lost is applied at the next check', async () => {
    const { pair, handle, startedAt } = await startSsoPair(platform, clock, { pmRoles: ['viewer'] });
    const portalRoles = () =>
      platform.db.one(sql.type(z.object({ roles: z.array(z.string()), rolesVersion: z.number().nullable() }))`
        SELECT pu.roles, ps.roles_version AS "rolesVersion" FROM portal_users pu JOIN portal_sessions ps ON ps.portal_user_id = pu.id WHERE ps.id = ${pair.portalSessionId}`);

    await platform.db.query(sql.unsafe`UPDATE users SET roles = '{owner}', roles_version = 2 WHERE id = ${pair.pmUserId}`);
    await handle.signal(rolesChangedSignal);
    await waitForSsoSessionState(handle, (state) => state.rolesVersionApplied === 2);
    expect(await portalRoles()).toEqual({ roles: ['listing_editor', 'portal_admin'], rolesVersion: 2 });
    const applied = await platform.db.any(sql.type(z.object({ details: z.record(z.unknown()) }))`
      SELECT details FROM audit_log WHERE action = 'SsoRolesApplied' AND user_id = ${pair.pmUserId}`);
    expect(applied).toEqual([{ details: expect.objectContaining({ roles: ['listing_editor', 'portal_admin'], trigger: 'workflow', rolesVersion: 2 }) }]);

    await clock.advance(10 * MINUTE);
    const usedAt = clock.now();
    await useSessions(platform.db, pair, usedAt);
    await platform.db.query(sql.unsafe`UPDATE users SET roles = '{viewer}', roles_version = 3 WHERE id = ${pair.pmUserId}`);
    await clock.advance(startedAt + SSO_IDLE_SECONDS * 1000 + 5000 - clock.now()); // past the check at the first idle deadline
    expect(await portalRoles()).toEqual({ roles: ['listing_viewer'], rolesVersion: 3 });
    expect(await handle.query(ssoSessionStatusQuery)).toMatchObject({ status: 'active', rolesVersionApplied: 3, rolesApplied: 2, lastActivityAt: usedAt });

    receiversEndSessions(setup, pair);
    await pmLogout(platform, pair, handle);
    expect(await handle.result()).toMatchObject({ initiatedBy: 'pm' });
  });

  it('a PM user disabled without a signal loses the portal session at the next check', async () => {
    const { pair, handle, startedAt } = await startSsoPair(platform, clock);
    receiversEndSessions(setup, pair);
    await clock.advance(10 * MINUTE);
    await useSessions(platform.db, pair, clock.now());
    await platform.db.query(sql.unsafe`UPDATE users SET disabled_at = now() WHERE id = ${pair.pmUserId}`);

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'user_disabled', backchannelDelivered: true });
    const [token] = portal.deliveredFor(pair);
    expect(token!.claims).toMatchObject({ sub: pair.pmUserId, sid: pair.pmSessionId });
    expect(token!.receivedAt).toBeLessThanOrEqual(startedAt + SSO_IDLE_SECONDS * 1000 + MINUTE);
    expect(await readPortalSession(platform.db, pair)).toMatchObject({ reason: 'pm_logout' });
    expect(await readPmSession(platform.db, pair)).toMatchObject({ reason: 'user_disabled' });
    expect((await workflowLogoutAudits(platform.db, pair))[0]!.details).toMatchObject({ initiatedBy: 'user_disabled', delivery: 'delivered' });
  });

  it('a user_disabled signal logs the portal out at once', async () => {
    const { pair, handle } = await startSsoPair(platform, clock);
    receiversEndSessions(setup, pair);
    await platform.db.query(sql.unsafe`UPDATE users SET disabled_at = now() WHERE id = ${pair.pmUserId}`);
    await handle.signal(pmSessionEndedSignal, { reason: 'user_disabled' });

    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'user_disabled', backchannelDelivered: true });
    expect(await readPmSession(platform.db, pair)).toMatchObject({ reason: 'user_disabled' });
  });

  it('continues as new when its history grows, carrying its state', async () => {
    const { pair, handle } = await startSsoPair(platform, clock);
    const firstRunId = (await handle.describe()).runId;
    let applied = 0;
    while ((await handle.describe()).runId === firstRunId) {
      await handle.signal(rolesChangedSignal);
      applied += 1;
      await waitForSsoSessionState(handle, (state) => state.rolesApplied >= applied);
      expect(applied).toBeLessThanOrEqual(100);
    }
    const carried = await handle.query(ssoSessionStatusQuery);
    expect(carried).toMatchObject({ status: 'active', rolesApplied: applied, rolesVersionApplied: 1, lastActivityAt: expect.any(Number) });
    const firstRun = await platform.client.workflow.getHandle(handle.workflowId, firstRunId).fetchHistory();
    expect(firstRun.events!.at(-1)!.workflowExecutionContinuedAsNewEventAttributes).toBeTruthy();

    receiversEndSessions(setup, pair);
    await pmLogout(platform, pair, handle);
    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'pm', backchannelDelivered: true });
    expect(await workflowLogoutAudits(platform.db, pair)).toEqual([]);
  });
});
