import { randomBytes } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ssoSessionStatusQuery } from '../../workflows/sso-session-messages';
import { eventually } from '../helpers/eventually';
import { parseForm, type TestBrowser } from '../helpers/oauth-browser';
import {
  auditRowsOf,
  followRedirects,
  readPmSession,
  readPortalSession,
  runningSsoSessionWorkflow,
  sessionsOf,
  startSsoTestPlatform,
  type PmUser,
  type SsoTestPlatform,
} from '../helpers/sso-platform';
import { startTemporalDevServer } from '../helpers/temporal';
import { scanPlatformForSecrets } from '../helpers/secret-scan';
import { USER_PASSWORD } from '../helpers/oauth-server';

/** What the portal's page says about who is signed in. */
interface PortalPage {
  signedInAs: string | null;
  roles: string[];
  notice: string | null;
}

function readPortalPage(page: string): PortalPage {
  const signedInAs = /Signed in as <strong>([^<]*)<\/strong>/.exec(page)?.[1] ?? null;
  const roleList = /<ul class="roles">([\s\S]*?)<\/ul>/.exec(page)?.[1] ?? '';
  const roles = [...roleList.matchAll(/<li>([^<]*)<\/li>/g)].map((match) => match[1]!);
  const notice = /<p class="note" role="status">([^<]*)<\/p>/.exec(page)?.[1] ?? null;
  return { signedInAs, roles, notice };
}

/**
 * Single sign-on end to end, with every part real and wired as production wires it: the api-server
 * (the OpenID Provider and the PM app) and the reality-server as HTTP servers on 127.0.0.1, the worker
 * running the SSO session workflows on a Temporal dev server in real time, one Postgres database. A
 * browser (fetch with one cookie jar for 127.0.0.1) signs in to the PM app and opens the portal both
 * ways; then each way one side's session can end is shown to end the other, by the portal's check on
 * its next request and by the workflow's back-channel logout without one. Each case has its own PM user.
 */
let temporal: TestWorkflowEnvironment;

beforeAll(async () => {
  temporal = await startTemporalDevServer();
});

afterAll(async () => {
  await temporal?.teardown();
});

describe('single sign-on end to end', { timeout: 120_000 }, () => {
  let sso: SsoTestPlatform;

  beforeAll(async () => {
    sso = await startSsoTestPlatform(temporal);
    await installBackchannelFaults(sso);
  });

  afterAll(async () => {
    // Before the database goes: the portal's client secret and the users' password are nowhere in plaintext.
    const scan = sso && (await scanPlatformForSecrets(sso.platform, { extraSecrets: [sso.platform.config.sso.portal.clientSecret ?? '', USER_PASSWORD] }));
    await sso?.close();
    expect(scan?.hits).toEqual([]);
    expect(scan?.historiesScanned).toBeGreaterThan(0);
  });

  const portalPage = async (browser: TestBrowser) => {
    const response = await browser.get(`${sso.portalUrl}/`);
    expect(response.status).toBe(200);
    return readPortalPage(await response.text());
  };

  const pmMe = async (browser: TestBrowser) => (await browser.get(`${sso.platform.apiUrl}/api/v1/auth/me`)).status;

  /** The PM app's login page, then its "Open Reality Portal" button, followed to the portal's page. */
  async function openPortalWithButton(user: PmUser) {
    const browser = sso.browser();
    const button = await browser.get('/sso/reality-portal');
    expect(button.status).toBe(303);
    expect(button.headers.get('location')).toBe('/login?return_to=%2Fsso%2Freality-portal');
    const signedIn = await browser.signIn(user.email, user.password, '/sso/reality-portal');
    expect(signedIn.headers.get('location')).toBe('/sso/reality-portal');
    const buttonPage = await (await browser.get('/sso/reality-portal')).text();
    expect(buttonPage).toContain('Open Reality Portal');

    const pressed = await browser.submit(buttonPage);
    expect(pressed.status).toBe(303);
    // The portal binds the flow to this browser, the PM app mints the token for it, the portal redeems it.
    const { response, visited } = await followRedirects(browser, pressed);
    expect(visited.map((url) => `${url.origin}${url.pathname}`)).toEqual([
      `${sso.portalUrl}/sso/handoff`,
      `${sso.platform.apiUrl}/sso/reality-portal/token`,
      `${sso.portalUrl}/sso/redeem`,
      `${sso.portalUrl}/`,
    ]);
    expect(browser.cookies.has('portal_sso_binding')).toBe(false);
    const page = readPortalPage(await response.text());
    const sessions = await sessionsOf(sso, browser);
    return { browser, page, pmSessionId: sessions.pmSessionId!, portalSessionId: sessions.portalSessionId! };
  }

  it('PM login, the "Open Reality Portal" button, a portal session: the portal page shows the mapped roles of the PM roles', async () => {
    const user = await sso.createPmUser(['owner', 'agent']);
    const { page, pmSessionId, portalSessionId } = await openPortalWithButton(user);

    expect(page).toEqual({ signedInAs: user.displayName, roles: ['listing_editor', 'portal_admin'], notice: null });
    expect(await readPortalSession(sso, portalSessionId)).toMatchObject({ method: 'sso_token', pmSessionId, endedAt: null });
    expect(await auditRowsOf(sso, 'SsoTokenIssued', user.id)).toEqual([expect.objectContaining({ details: expect.objectContaining({ sid: pmSessionId }) })]);
    expect(await auditRowsOf(sso, 'SsoLogin', user.id)).toEqual([expect.objectContaining({ outcome: 'success' })]);
    // The session's SSO session workflow runs and keeps the pair.
    const workflow = await runningSsoSessionWorkflow(sso, portalSessionId);
    expect(await workflow.query(ssoSessionStatusQuery)).toMatchObject({ status: 'active' });
  });

  it('the same through the OpenID Connect authorization code flow from the portal: no login page, no consent page', async () => {
    const user = await sso.createPmUser(['viewer']);
    const browser = sso.browser();
    expect((await browser.signIn(user.email, user.password)).status).toBe(303);
    const { pmSessionId } = await sessionsOf(sso, browser);

    const { response, visited } = await followRedirects(browser, await browser.get(`${sso.portalUrl}/sso/login`));
    expect(visited.map((url) => `${url.origin}${url.pathname}`)).toEqual([`${sso.platform.apiUrl}/oauth/authorize`, `${sso.portalUrl}/sso/callback`, `${sso.portalUrl}/`]);
    const [authorize, callback] = visited;
    expect(authorize!.searchParams.get('client_id')).toBe(sso.platform.config.sso.portal.clientId);
    expect(authorize!.searchParams.get('scope')).toBe('openid profile email');
    expect(callback!.searchParams.get('code')).toBeTruthy();
    const text = await response.text();
    expect(readPortalPage(text)).toEqual({ signedInAs: user.displayName, roles: ['listing_viewer'], notice: null });
    expect(text).toContain('OpenID Connect');

    const { portalSessionId } = await sessionsOf(sso, browser);
    expect(await readPortalSession(sso, portalSessionId!)).toMatchObject({ method: 'oidc', pmSessionId, endedAt: null });
    expect(await auditRowsOf(sso, 'OAuthAuthorize', user.id)).toEqual([expect.objectContaining({ details: expect.objectContaining({ consent: 'first_party' }) })]);
    await runningSsoSessionWorkflow(sso, portalSessionId!);
  });

  it("a link from another user's button flow (login CSRF) does not sign the victim's browser in", async () => {
    // The attacker presses the button in their own browser and keeps the link to /sso/redeem instead of following it.
    const attacker = await sso.createPmUser(['owner']);
    const attackerBrowser = sso.browser();
    expect((await attackerBrowser.signIn(attacker.email, attacker.password)).status).toBe(303);
    let step = await attackerBrowser.submit(await (await attackerBrowser.get('/sso/reality-portal')).text());
    while (!new URL(step.headers.get('location')!, step.url).pathname.startsWith('/sso/redeem')) {
      step = await attackerBrowser.get(new URL(step.headers.get('location')!, step.url).toString());
    }
    const attackersLink = new URL(step.headers.get('location')!, step.url).toString();

    // The victim, signed in to the PM app and to the portal, is lured to the link.
    const victim = await sso.createPmUser(['viewer']);
    const { browser: victimBrowser, page } = await openPortalWithButton(victim);
    expect(page.signedInAs).toBe(victim.displayName);
    const lured = await victimBrowser.get(attackersLink);
    expect(lured.status).toBe(403);
    expect(await lured.text()).toContain('Start again from the PM app');
    expect((await portalPage(victimBrowser)).signedInAs).toBe(victim.displayName);
    expect(await auditRowsOf(sso, 'SsoLogin', attacker.id)).toEqual([]);
    expect(await auditRowsOf(sso, 'SsoTokenRejected', attacker.id)).toEqual([expect.objectContaining({ details: expect.objectContaining({ reason: 'browser_mismatch' }) })]);
  });

  describe('session sync', () => {
    it('a PM logout ends the portal session on its very next request, while the back-channel logout is still held up', async () => {
      const user = await sso.createPmUser(['viewer']);
      const { browser, portalSessionId } = await openPortalWithButton(user);
      const workflow = await runningSsoSessionWorkflow(sso, portalSessionId);
      // The portal's receiver fails every delivery, so only the request's own check can end the session.
      await failBackchannelLogouts(sso, portalSessionId, Number.MAX_SAFE_INTEGER);

      expect((await browser.post(`${sso.platform.apiUrl}/api/v1/auth/logout`, {})).status).toBe(204);
      const page = await portalPage(browser);
      expect(page).toEqual({ signedInAs: null, roles: [], notice: 'You were signed out because your PM app session ended.' });
      expect(browser.cookies.has('portal_session')).toBe(false);
      expect(await readPortalSession(sso, portalSessionId)).toMatchObject({ endedReason: 'pm_session_ended' });
      // The back-channel logout, sent meanwhile, lands once the session has ended: nothing is left to end.
      expect(await workflow.result()).toMatchObject({ status: 'ended', initiatedBy: 'pm', backchannelDelivered: true });
    });

    it('a PM logout ends the portal session by back-channel logout within seconds, without any portal request', async () => {
      const user = await sso.createPmUser(['viewer']);
      const { browser, pmSessionId, portalSessionId } = await openPortalWithButton(user);
      const workflow = await runningSsoSessionWorkflow(sso, portalSessionId);

      expect((await browser.post(`${sso.platform.apiUrl}/api/v1/auth/logout`, {})).status).toBe(204);
      const ended = await eventually(async () => {
        const session = await readPortalSession(sso, portalSessionId);
        return session.endedAt !== null && session;
      }, 15_000, 'the portal session to end');
      expect(ended.endedReason).toBe('pm_logout');
      expect(await workflow.result()).toMatchObject({ status: 'ended', initiatedBy: 'pm', backchannelDelivered: true });
      // One SsoLogout row: the portal's receiver of the api-server's logout token, which ended the portal
      // session. The workflow, which only delivered, writes none of its own.
      expect(await auditRowsOf(sso, 'SsoLogout', user.id)).toEqual([
        expect.objectContaining({ actorType: 'client', details: expect.objectContaining({ initiatedBy: 'pm', reason: 'pm_logout', portalSessionId, sid: pmSessionId }) }),
      ]);
      expect((await portalPage(browser)).signedInAs).toBeNull();
    });

    it('a back-channel logout that fails at first is retried until it lands', async () => {
      const user = await sso.createPmUser(['viewer']);
      const { browser, portalSessionId } = await openPortalWithButton(user);
      const workflow = await runningSsoSessionWorkflow(sso, portalSessionId);
      // The receiver's database answers a lock timeout twice: 503, which the workflow retries.
      const faults = await failBackchannelLogouts(sso, portalSessionId, 2);

      expect((await browser.post(`${sso.platform.apiUrl}/api/v1/auth/logout`, {})).status).toBe(204);
      expect(await workflow.result()).toMatchObject({ status: 'ended', initiatedBy: 'pm', backchannelDelivered: true });
      expect(await faults.attempts()).toBe(3);
      expect(await readPortalSession(sso, portalSessionId)).toMatchObject({ endedReason: 'pm_logout' });
      const { deliveries } = await workflow.query(ssoSessionStatusQuery);
      expect(deliveries).toEqual([expect.objectContaining({ receiver: 'reality-server', delivered: true, attempts: 3, status: 200 })]);
    });

    /** The portal page's Sign out button, pressed. */
    async function signOutAtPortal(browser: TestBrowser) {
      const form = parseForm(await (await browser.get(`${sso.portalUrl}/`)).text());
      expect(form.buttons.map((button) => button.label)).toEqual(['Sign out']);
      const signOut = await browser.post(new URL(form.action, sso.portalUrl).toString(), form.fields);
      expect(signOut.status).toBe(303);
    }

    it('the portal sign-out ends the PM session at once; the workflow still delivers its back-channel logout to the api-server', async () => {
      const user = await sso.createPmUser(['viewer']);
      const { browser, pmSessionId, portalSessionId } = await openPortalWithButton(user);
      const workflow = await runningSsoSessionWorkflow(sso, portalSessionId);
      expect(await pmMe(browser)).toBe(200);

      await signOutAtPortal(browser);
      // The PM app's very next request, whether or not the workflow has delivered yet.
      expect(await pmMe(browser)).toBe(401);
      expect(await readPmSession(sso, pmSessionId)).toMatchObject({ endedReason: 'portal_logout' });
      expect((await portalPage(browser)).signedInAs).toBeNull();

      expect(await workflow.result()).toMatchObject({ status: 'ended', initiatedBy: 'portal', backchannelDelivered: true });
      const { deliveries } = await workflow.query(ssoSessionStatusQuery);
      expect(deliveries).toEqual([expect.objectContaining({ receiver: 'api-server', delivered: true, status: 200 })]);
      // One row per session ended, both by the sign-out; the api-server's receiver found the PM session
      // ended already and the workflow only delivered, so neither writes one.
      expect(await auditRowsOf(sso, 'SsoLogout', user.id)).toEqual([
        expect.objectContaining({ actorType: 'user', details: expect.objectContaining({ initiatedBy: 'portal', reason: 'logout', portalSessionId, sid: pmSessionId }) }),
        expect.objectContaining({ actorType: 'user', details: expect.objectContaining({ initiatedBy: 'portal', reason: 'portal_logout', portalSessionId, sid: pmSessionId }) }),
      ]);
    });

    it("the portal sign-out in one browser logs out the PM session's portal session in another browser, without a request there", async () => {
      const user = await sso.createPmUser(['viewer']);
      const { browser, pmSessionId } = await openPortalWithButton(user);
      // A second browser holding the same PM session opens the portal too.
      const other = sso.browser();
      other.cookies.set('pm_session', browser.cookies.get('pm_session')!);
      const { response } = await followRedirects(other, await other.submit(await (await other.get('/sso/reality-portal')).text()));
      expect(readPortalPage(await response.text()).signedInAs).toBe(user.displayName);
      const otherSessions = await sessionsOf(sso, other);
      expect(otherSessions.pmSessionId).toBe(pmSessionId);
      const otherWorkflow = await runningSsoSessionWorkflow(sso, otherSessions.portalSessionId!);

      await signOutAtPortal(browser);
      expect(await otherWorkflow.result()).toMatchObject({ status: 'ended', backchannelDelivered: true });
      expect(await readPortalSession(sso, otherSessions.portalSessionId!)).toMatchObject({ endedReason: 'pm_logout' });
      expect((await portalPage(other)).signedInAs).toBeNull();
    });

    it('a role change through the admin API reaches the portal: pushed by the workflow, and on the next page', async () => {
      const user = await sso.createPmUser(['viewer']);
      const { browser, page, portalSessionId } = await openPortalWithButton(user);
      expect(page.roles).toEqual(['listing_viewer']);
      const workflow = await runningSsoSessionWorkflow(sso, portalSessionId);

      const changed = await sso.admin('PUT', `/api/v1/admin/users/${user.id}/roles`, { roles: ['owner'] });
      expect(changed.status).toBe(200);
      const { user: view } = (await changed.json()) as { user: { rolesVersion: number } };
      // No portal request: the workflow applied the new roles_version to the portal account and its session.
      await eventually(async () => (await workflow.query(ssoSessionStatusQuery)).rolesVersionApplied === view.rolesVersion, 15_000, 'the workflow to apply the roles');
      const account = await sso.platform.db.one(sql.type(z.object({ roles: z.array(z.string()) }))`SELECT roles FROM portal_users WHERE pm_user_id = ${user.id}`);
      expect(account.roles).toEqual(['listing_editor', 'portal_admin']);
      expect(await readPortalSession(sso, portalSessionId)).toMatchObject({ rolesVersion: view.rolesVersion, endedAt: null });

      expect((await portalPage(browser)).roles).toEqual(['listing_editor', 'portal_admin']);
    });

    it('disabling the user through the admin API ends both sessions', async () => {
      const user = await sso.createPmUser(['viewer']);
      const { browser, portalSessionId } = await openPortalWithButton(user);
      const workflow = await runningSsoSessionWorkflow(sso, portalSessionId);

      expect((await sso.admin('POST', `/api/v1/admin/users/${user.id}/disable`)).status).toBe(200);
      expect(await pmMe(browser)).toBe(401);
      expect((await portalPage(browser)).signedInAs).toBeNull();
      expect(await readPortalSession(sso, portalSessionId)).toMatchObject({ endedReason: 'user_disabled' });
      expect(await workflow.result()).toMatchObject({ status: 'ended', initiatedBy: 'user_disabled' });
      // Nor can the user open the portal again.
      expect((await sso.browser().signIn(user.email, user.password)).status).not.toBe(303);
    });
  });
});

describe('single sign-on end to end: idle expiry', { timeout: 120_000 }, () => {
  const IDLE_SECONDS = 5;
  let sso: SsoTestPlatform;

  beforeAll(async () => {
    // A platform of its own (on the same Temporal server): the idle time is configuration.
    sso = await startSsoTestPlatform(temporal, { environment: { SESSION_IDLE_SECONDS: String(IDLE_SECONDS) } });
  });

  afterAll(async () => {
    await sso?.close();
  });

  it('a pair neither side uses for SESSION_IDLE_SECONDS ends on both sides, by the workflow', async () => {
    const user = await sso.createPmUser(['viewer']);
    const browser = sso.browser();
    expect((await browser.signIn(user.email, user.password)).status).toBe(303);
    const { response } = await followRedirects(browser, await browser.submit(await (await browser.get('/sso/reality-portal')).text()));
    expect(readPortalPage(await response.text()).signedInAs).toBe(user.displayName);
    const { pmSessionId, portalSessionId } = await sessionsOf(sso, browser);
    const workflow = await runningSsoSessionWorkflow(sso, portalSessionId!);

    expect(await workflow.result()).toMatchObject({ status: 'ended', initiatedBy: 'idle_expiry' });
    expect(await readPortalSession(sso, portalSessionId!)).toMatchObject({ endedReason: 'idle' });
    expect(await readPmSession(sso, pmSessionId!)).toMatchObject({ endedReason: 'idle' });
    expect(await auditRowsOf(sso, 'SsoLogout', user.id)).toContainEqual(expect.objectContaining({ details: expect.objectContaining({ initiatedBy: 'idle_expiry', endedHere: ['portal', 'pm'] }) }));
  });
});

/**
 * A test-only fault in the portal's back-channel logout receiver: a trigger that answers the receiver's
 * end of a named portal session (ended_reason pm_logout) with a lock timeout (SQLSTATE 55P03), which
 * the receiver answers 503 and the workflow retries. Attempts are counted by a sequence, which a
 * rolled-back transaction does not undo.
 */
async function installBackchannelFaults(sso: SsoTestPlatform): Promise<void> {
  await sso.platform.db.query(sql.unsafe`
    CREATE TABLE e2e_backchannel_faults (portal_session_id uuid PRIMARY KEY, failures bigint NOT NULL, attempts regclass NOT NULL)`);
  await sso.platform.db.query(sql.unsafe`
    CREATE FUNCTION e2e_backchannel_fault() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE fault e2e_backchannel_faults;
    BEGIN
      SELECT * INTO fault FROM e2e_backchannel_faults WHERE portal_session_id = NEW.id;
      IF FOUND AND nextval(fault.attempts) <= fault.failures THEN
        RAISE EXCEPTION 'canceling statement due to lock timeout (test fault)' USING ERRCODE = '55P03';
      END IF;
      RETURN NEW;
    END $$`);
  await sso.platform.db.query(sql.unsafe`
    CREATE TRIGGER e2e_backchannel_fault BEFORE UPDATE ON portal_sessions FOR EACH ROW
    WHEN (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL AND NEW.ended_reason = 'pm_logout')
    EXECUTE FUNCTION e2e_backchannel_fault()`);
}

/** The receiver fails its first `failures` attempts to end the portal session; `attempts()` counts them all. */
async function failBackchannelLogouts(sso: SsoTestPlatform, portalSessionId: string, failures: number) {
  const sequence = `e2e_backchannel_attempts_${randomBytes(6).toString('hex')}`;
  await sso.platform.db.query(sql.unsafe`CREATE SEQUENCE ${sql.identifier([sequence])}`);
  await sso.platform.db.query(sql.unsafe`INSERT INTO e2e_backchannel_faults VALUES (${portalSessionId}, ${failures}, ${sequence}::regclass)`);
  return {
    attempts: () =>
      sso.platform.db.oneFirst(sql.type(z.object({ attempts: z.number() }))`
        SELECT (CASE WHEN is_called THEN last_value ELSE 0 END)::int AS attempts FROM ${sql.identifier([sequence])}`),
  };
}
