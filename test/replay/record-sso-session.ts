import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import type { History } from '@temporalio/common/lib/proto-utils';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { pmSessionEndedSignal, rolesChangedSignal } from '../../workflows/sso-session-messages';
import {
  pmLogout,
  portalLogout,
  readPmSession,
  receiversEndSessions,
  startSsoPair,
  startSsoSessionTestPlatform,
  useSessions,
  waitForSsoSessionState,
  type SsoPairOptions,
  type SsoSessionHandle,
  type SsoSessionTestPlatform,
} from '../helpers/sso-sessions';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';
import { recordedHistory, writeCheckedHistories } from './recording';

const MINUTE = 60 * 1000;

/**
 * Records the SSO session workflow's histories for test/replay/replay.test.ts (run by
 * `npm run record-histories` with test/replay/record.ts): each way a pair ends, driven with the real
 * activities, worker and Postgres on the time-skipping server, the two servers' back-channel logout
 * receivers scripted as in test/workflows/sso-session.test.ts. Every history is checked for the
 * logout tokens the run delivered, the sessions' tokens and the encryption keys.
 */
describe('record SSO session workflow histories (time-skipping)', { timeout: 5 * 60 * 1000 }, () => {
  let temporal: TestWorkflowEnvironment;
  let clock: SimulatedClock;
  let setup: SsoSessionTestPlatform;
  const recorded = new Map<string, History>();
  const secrets = new Set<string>();

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    clock = await SimulatedClock.of(temporal);
    setup = await startSsoSessionTestPlatform(temporal, clock);
    for (const key of [setup.platform.config.encryption.activeKey, setup.platform.config.payloadEncryption.activeKey]) if (key) secrets.add(key);
  });

  afterAll(async () => {
    await setup?.close();
    await temporal?.teardown();
  });

  async function pair(options: Partial<SsoPairOptions> = {}) {
    setup.portal.reset();
    setup.apiServer.reset();
    const started = await startSsoPair(setup.platform, clock, options);
    for (const secret of started.pair.secrets) secrets.add(secret);
    receiversEndSessions(setup, started.pair);
    return started;
  }

  async function record(name: string, handle: SsoSessionHandle, runId?: string) {
    for (const received of [...setup.portal.received, ...setup.apiServer.received]) secrets.add(received.token);
    recorded.set(name, await recordedHistory(handle, runId));
  }

  it('PM logout delivered to the portal after a failed attempt, with a role change before', async () => {
    const { pair: rows, handle } = await pair();
    await setup.platform.db.query(sql.unsafe`UPDATE users SET roles = '{owner}', roles_version = 2 WHERE id = ${rows.pmUserId}`);
    await handle.signal(rolesChangedSignal);
    await waitForSsoSessionState(handle, (state) => state.rolesVersionApplied === 2);
    setup.portal.answers = [503];
    await pmLogout(setup.platform, rows, handle);
    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'pm', backchannelDelivered: true });
    await record('sso-session-pm-logout', handle);
  });

  it('portal logout delivered to the api-server', async () => {
    const { pair: rows, handle } = await pair();
    await portalLogout(setup.platform, rows, handle);
    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'portal', backchannelDelivered: true });
    await record('sso-session-portal-logout', handle);
  });

  it('a refused logout token, and an undelivered one', async () => {
    const refused = await pair();
    setup.portal.answers = [400];
    await refused.handle.signal(pmSessionEndedSignal, { reason: 'revoked' });
    expect(await refused.handle.result()).toEqual({ status: 'ended', initiatedBy: 'pm', backchannelDelivered: false });
    await record('sso-session-backchannel-refused', refused.handle);

    const undelivered = await pair();
    setup.apiServer.answers = Array.from({ length: 100 }, () => 503);
    await portalLogout(setup.platform, undelivered.pair, undelivered.handle);
    expect(await undelivered.handle.result()).toEqual({ status: 'ended', initiatedBy: 'portal', backchannelDelivered: false });
    await record('sso-session-backchannel-undelivered', undelivered.handle);
  });

  it('idle expiry after a use that kept the pair alive', async () => {
    const { pair: rows, handle } = await pair();
    await clock.advance(20 * MINUTE);
    await useSessions(setup.platform.db, rows, clock.now());
    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'idle_expiry' });
    await record('sso-session-idle-expiry', handle);
  });

  it("the portal session's own expiry, which leaves the PM session be", async () => {
    const { pair: rows, handle } = await pair({ portalSessionMs: 20 * MINUTE });
    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'absolute_expiry' });
    expect(await readPmSession(setup.platform.db, rows)).toMatchObject({ endedAt: null });
    await record('sso-session-portal-expiry', handle);
  });

  it('a disabled user seen at a check', async () => {
    const { pair: rows, handle } = await pair();
    await setup.platform.db.query(sql.unsafe`UPDATE users SET disabled_at = now() WHERE id = ${rows.pmUserId}`);
    expect(await handle.result()).toEqual({ status: 'ended', initiatedBy: 'user_disabled', backchannelDelivered: true });
    await record('sso-session-user-disabled', handle);
  });

  it('a run that continues as new, and the run after it', async () => {
    const { pair: rows, handle } = await pair();
    const firstRunId = (await handle.describe()).runId;
    for (let applied = 1; (await handle.describe()).runId === firstRunId; applied++) {
      await handle.signal(rolesChangedSignal);
      await waitForSsoSessionState(handle, (state) => state.rolesApplied >= applied);
    }
    await record('sso-session-continue-as-new', handle, firstRunId);
    await clock.advance(10 * MINUTE);
    await pmLogout(setup.platform, rows, handle);
    expect(await handle.result()).toMatchObject({ initiatedBy: 'pm' });
    await record('sso-session-continued-run', handle);
  });

  it('holds no secret and no encoded payload, and writes the histories', async () => {
    expect(recorded.size).toBe(9);
    expect(secrets.size).toBeGreaterThan(16);
    await writeCheckedHistories(recorded, secrets);
  });
});
