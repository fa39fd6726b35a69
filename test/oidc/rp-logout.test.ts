import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair, SignJWT } from 'jose';
import { sql } from 'slonik';
import { z } from 'zod';
import { signIdToken } from '../../platform/oauth-server/id-tokens';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { parseForm, signedInBrowser, TestBrowser } from '../helpers/oauth-browser';
import { auditRows, type TestClient } from '../oauth/token-helpers';
import { sessionRevoked } from '../helpers/sso-pm';
import { browserSession, createRelyingParty, LOGGED_OUT, signInWithOpenId } from './oidc-helpers';

/** RP-initiated logout at /oauth/logout: who is signed out, when the user is asked, and where the browser goes. */
describe('RP-initiated logout', () => {
  let server: OAuthTestServer;
  let client: TestClient;

  beforeAll(async () => {
    server = await startOAuthTestServer();
    client = await createRelyingParty(server, { firstParty: true });
  });
  afterAll(() => server?.close());

  async function signedInWithIdToken() {
    const { browser, user } = await signedInBrowser(server);
    const tokens = await signInWithOpenId(server, client, browser);
    return { browser, user, idToken: tokens.id_token!, session: await browserSession(server, browser) };
  }

  const logoutPath = (parameters: Record<string, string>) => `/oauth/logout?${new URLSearchParams(parameters)}`;

  function redirectedTo(response: Response): URL {
    expect(response.status).toBe(303);
    return new URL(response.headers.get('location')!);
  }

  async function expectStillSignedIn(sessionId: string) {
    expect(await sessionRevoked(server, sessionId)).toEqual({ revoked: false, reason: null });
  }

  it('ends the browser session the id_token_hint names, audits it, and sends the browser back with state', async () => {
    const { browser, user, idToken, session } = await signedInWithIdToken();
    const response = await browser.get(logoutPath({ id_token_hint: idToken, post_logout_redirect_uri: LOGGED_OUT, state: 'bye 1' }));
    const location = redirectedTo(response);
    expect(`${location.origin}${location.pathname}`).toBe(LOGGED_OUT);
    expect(location.searchParams.get('state')).toBe('bye 1');
    expect(await sessionRevoked(server, session.id)).toEqual({ revoked: true, reason: 'rp_logout' });
    expect(browser.cookies.has('pm_session')).toBe(false);
    expect((await browser.get('/api/v1/auth/me')).status).toBe(401);
    expect((await auditRows(server, 'OidcLogout')).at(-1)).toMatchObject({
      user_id: user.id,
      client_id: client.client.id,
      details: { sid: session.id, confirmed: false },
    });
  });

  it('shows the signed-out page when no post_logout_redirect_uri is given', async () => {
    const { browser, idToken, session } = await signedInWithIdToken();
    const response = await browser.get(logoutPath({ id_token_hint: idToken }));
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('You are signed out');
    expect((await sessionRevoked(server, session.id)).revoked).toBe(true);
  });


  it('accepts an expired id_token as the hint', async () => {
    const { browser, user, session } = await signedInWithIdToken();
    const key = await server.app.authorizationServer.keys.activeKey();
    const expired = await signIdToken(key, {
      issuer: server.url,
      clientId: client.client.id,
      userId: user.id,
      nonce: null,
      sessionId: session.id,
      authTime: session.authTime * 1000,
      now: new Date(Date.now() - 3 * 3600_000),
      lifetimeSeconds: 600,
    });
    redirectedTo(await browser.get(logoutPath({ id_token_hint: expired, post_logout_redirect_uri: LOGGED_OUT })));
    expect((await sessionRevoked(server, session.id)).revoked).toBe(true);
  });

  it('completes while Temporal is unreachable, with a portal session to tell', async () => {
    const { browser, user, idToken, session } = await signedInWithIdToken();
    const portalUserId = await server.db.oneFirst(sql.type(z.object({ id: z.string() }))`
      INSERT INTO portal_users (pm_user_id, email, display_name) VALUES (${user.id}, ${user.email}, 'Portal user') RETURNING id`);
    await server.db.query(sql.unsafe`
      INSERT INTO portal_sessions (portal_user_id, token_hash, pm_session_id, method, expires_at)
      VALUES (${portalUserId}, ${`hash-${session.id}`}, ${session.id}, 'oidc', now() + interval '1 hour')`);
    // The signal gives up at its deadline; the logout is committed whatever Temporal does.
    redirectedTo(await browser.get(logoutPath({ id_token_hint: idToken, post_logout_redirect_uri: LOGGED_OUT })));
    expect((await sessionRevoked(server, session.id)).revoked).toBe(true);
  });

  describe('asks the user instead of signing anyone out silently', () => {
    const rejectedCount = async () => (await auditRows(server, 'OidcLogoutRejected')).length;

    it('when the browser presents no session (a cross-site POST carries no Lax cookie); confirming from the page signs it out', async () => {
      const { browser, idToken, session } = await signedInWithIdToken();
      const rejectedBefore = await rejectedCount();
      const sessionCookie = browser.cookies.get('pm_session')!;
      browser.cookies.delete('pm_session');
      const response = await browser.post('/oauth/logout', { id_token_hint: idToken, post_logout_redirect_uri: LOGGED_OUT, state: 's' });
      expect(response.status).toBe(200);
      const page = await response.text();
      expect(page).toContain('Sign out of your account?');
      expect(page).not.toContain('Signed in as');
      await expectStillSignedIn(session.id);
      // Showing the question refuses nothing.
      expect(await rejectedCount()).toBe(rejectedBefore);

      // The form is posted from our own page: the browser's Lax session cookie goes with it.
      browser.cookies.set('pm_session', sessionCookie);
      const confirmed = await browser.submit(page, {}, 'yes');
      expect(redirectedTo(confirmed).searchParams.get('state')).toBe('s');
      expect(await sessionRevoked(server, session.id)).toEqual({ revoked: true, reason: 'rp_logout' });
      expect((await auditRows(server, 'OidcLogout')).at(-1)).toMatchObject({ details: { sid: session.id, confirmed: true } });
    });

    it('a leaked id_token ends nothing from a browser without the session, even a redirect asked for', async () => {
      const { idToken, session } = await signedInWithIdToken();
      const holder = new TestBrowser(server.url);
      for (const parameters of [{ id_token_hint: idToken }, { id_token_hint: idToken, post_logout_redirect_uri: LOGGED_OUT, state: 'x' }] as Array<Record<string, string>>) {
        const response = await holder.get(logoutPath(parameters));
        expect(response.status, JSON.stringify(parameters)).toBe(200);
        expect(await response.text()).toContain('Sign out of your account?');
      }
      await expectStillSignedIn(session.id);
      // Confirming there signs out only that browser, which has no session.
      const page = await (await holder.get(logoutPath({ id_token_hint: idToken, post_logout_redirect_uri: LOGGED_OUT }))).text();
      expect(redirectedTo(await holder.submit(page, {}, 'yes')).origin).toBe('https://rp.example');
      await expectStillSignedIn(session.id);
    });

    it('but a hint whose session has ended needs no question: the browser goes back at once', async () => {
      const { idToken, session } = await signedInWithIdToken();
      await server.db.query(sql.unsafe`UPDATE user_sessions SET revoked_at = now(), ended_reason = 'logout' WHERE id = ${session.id}`);
      const response = await new TestBrowser(server.url).get(logoutPath({ id_token_hint: idToken, post_logout_redirect_uri: LOGGED_OUT, state: 'gone' }));
      expect(redirectedTo(response).searchParams.get('state')).toBe('gone');
    });

    it('when the hint names another session than the browser is signed in with; confirming signs the browser out', async () => {
      const { browser, user, idToken, session: before } = await signedInWithIdToken();
      await browser.signIn(user.email, user.password);
      const current = await browserSession(server, browser);
      const response = await browser.get(logoutPath({ id_token_hint: idToken, post_logout_redirect_uri: LOGGED_OUT, state: 'later' }));
      expect(response.status).toBe(200);
      expect(response.headers.get('content-security-policy')).toContain("form-action 'self' https://rp.example");
      const page = await response.text();
      expect(page).toContain('Sign out of your account?');
      expect(parseForm(page).fields).toMatchObject({ client_id: client.client.id, post_logout_redirect_uri: LOGGED_OUT, state: 'later' });
      await expectStillSignedIn(current.id);
      expect((await sessionRevoked(server, before.id)).reason).toBe('replaced_by_login');

      const confirmed = await browser.submit(page, {}, 'yes');
      expect(redirectedTo(confirmed).searchParams.get('state')).toBe('later');
      expect(await sessionRevoked(server, current.id)).toEqual({ revoked: true, reason: 'rp_logout' });
      expect((await auditRows(server, 'OidcLogout')).at(-1)).toMatchObject({ details: { sid: current.id, confirmed: true } });
    });

    it('when there is no hint; the confirmation needs the CSRF cookie of the page', async () => {
      const { browser, user } = await signedInBrowser(server);
      const session = await browserSession(server, browser);
      const rejectedBefore = await rejectedCount();
      const response = await browser.get(logoutPath({ client_id: client.client.id, post_logout_redirect_uri: LOGGED_OUT }));
      expect(response.status).toBe(200);
      const page = await response.text();
      expect(await rejectedCount()).toBe(rejectedBefore);

      // The same form posted from a browser without the page's cookie (another site) is refused.
      const forged = new TestBrowser(server.url);
      forged.cookies.set('pm_session', browser.cookies.get('pm_session')!);
      const refused = await forged.submit(page, {}, 'yes');
      expect(refused.status).toBe(403);
      await expectStillSignedIn(session.id);
      expect((await auditRows(server, 'OidcLogoutRejected')).at(-1)).toMatchObject({ user_id: user.id, details: { reason: 'csrf_token_wrong' } });

      expect(redirectedTo(await browser.submit(page, {}, 'yes')).origin).toBe('https://rp.example');
      expect((await sessionRevoked(server, session.id)).revoked).toBe(true);
    });
  });

  describe('refuses, with nothing changed and no redirect', () => {
    it.each([
      ['a tampered signature', (idToken: string) => `${idToken.split('.').slice(0, 2).join('.')}.${'A'.repeat(342)}`, 'id_token_hint_bad_signature'],
      ['garbage', () => 'not.a.jwt', 'id_token_hint_malformed'],
    ])('an id_token_hint with %s', async (_label, tamper, reason) => {
      const { browser, idToken, session } = await signedInWithIdToken();
      const response = await browser.get(logoutPath({ id_token_hint: tamper(idToken), post_logout_redirect_uri: LOGGED_OUT }));
      expect(response.status).toBe(400);
      expect(response.headers.get('location')).toBeNull();
      expect(await response.text()).toContain('You are still signed in');
      await expectStillSignedIn(session.id);
      expect((await auditRows(server, 'OidcLogoutRejected')).at(-1)).toMatchObject({ details: { reason } });
    });

    it('an id_token_hint signed by a key that is not ours', async () => {
      const { browser, user, session } = await signedInWithIdToken();
      const { privateKey } = await generateKeyPair('RS256');
      const foreign = await new SignJWT({ sid: session.id })
        .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: 'not-ours' })
        .setIssuer(server.url)
        .setSubject(user.id)
        .setAudience(client.client.id)
        .setIssuedAt()
        .setExpirationTime('10m')
        .sign(privateKey);
      expect((await browser.get(logoutPath({ id_token_hint: foreign }))).status).toBe(400);
      await expectStillSignedIn(session.id);
      expect((await auditRows(server, 'OidcLogoutRejected')).at(-1)).toMatchObject({ details: { reason: 'id_token_hint_bad_signature' } });
    });

    it('an access token presented as the hint', async () => {
      const { browser, session } = await signedInWithIdToken();
      const tokens = await signInWithOpenId(server, client, browser);
      expect((await browser.get(logoutPath({ id_token_hint: tokens.access_token }))).status).toBe(400);
      await expectStillSignedIn(session.id);
      expect((await auditRows(server, 'OidcLogoutRejected')).at(-1)).toMatchObject({ details: { reason: 'id_token_hint_wrong_type' } });
    });

    it('a post_logout_redirect_uri not registered for the hint’s client', async () => {
      const { browser, idToken, session } = await signedInWithIdToken();
      for (const uri of ['https://evil.example/', `${LOGGED_OUT}/x`, `${LOGGED_OUT}?next=1`]) {
        const response = await browser.get(logoutPath({ id_token_hint: idToken, post_logout_redirect_uri: uri }));
        expect(response.status).toBe(400);
        expect(response.headers.get('location')).toBeNull();
      }
      await expectStillSignedIn(session.id);
      expect((await auditRows(server, 'OidcLogoutRejected')).at(-1)).toMatchObject({ details: { reason: 'post_logout_redirect_uri_not_registered' } });
    });

    it('a client_id other than the hint’s audience', async () => {
      const { browser, idToken, session } = await signedInWithIdToken();
      const other = await createRelyingParty(server);
      expect((await browser.get(logoutPath({ id_token_hint: idToken, client_id: other.client.id }))).status).toBe(400);
      await expectStillSignedIn(session.id);
    });

    it('a post_logout_redirect_uri without a client to check it against', async () => {
      const response = await new TestBrowser(server.url).get(logoutPath({ post_logout_redirect_uri: LOGGED_OUT }));
      expect(response.status).toBe(400);
      expect(response.headers.get('location')).toBeNull();
    });
  });

  it('with no session at all, sends the browser back to a registered URI of the client it names', async () => {
    const response = await new TestBrowser(server.url).get(logoutPath({ client_id: client.client.id, post_logout_redirect_uri: LOGGED_OUT, state: 'x' }));
    expect(redirectedTo(response).toString()).toBe(`${LOGGED_OUT}?state=x`);
  });
});
