import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair, SignJWT } from 'jose';
import { sql } from 'slonik';
import type { SigningKey } from '../../platform/oauth-server/signing-keys';
import { BACKCHANNEL_LOGOUT_EVENT } from '../../platform/sso/logout-tokens';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import {
  auditRows,
  meStatus,
  portalLogoutToken,
  portalSigningKeys,
  PORTAL_URL,
  sendPortalLogoutToken,
  sessionRevoked,
  signInPm,
  SSO_ENVIRONMENT,
  type PmSignIn,
} from '../helpers/sso-pm';

/**
 * POST /oauth/backchannel-logout: the portal's logout tokens (Back-Channel Logout 1.0, the portal as
 * sender) end the PM sessions they name; every refusal is a 400 with a reason and an audit row.
 */
describe('back-channel logout from the portal to the PM app', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer(SSO_ENVIRONMENT);
  });

  afterAll(async () => {
    await server?.close();
  });

  let userCount = 0;
  async function signedInUser(): Promise<PmSignIn & { userId: string; email: string; password: string }> {
    userCount += 1;
    const user = await server.createUser(`portal-logout-${userCount}@example.com`);
    return { ...(await signInPm(server, user.email, user.password)), userId: user.id, email: user.email, password: user.password };
  }


  /** A token as a broken or hostile sender would make it: any claims, signed with `key`, with or without `exp`. */
  async function craftedToken(claims: Record<string, unknown>, key?: SigningKey, expires = true) {
    const signer = key ?? (await portalSigningKeys(server).activeKey());
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({ events: { [BACKCHANNEL_LOGOUT_EVENT]: {} }, jti: randomUUID(), ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: signer.kid, typ: 'logout+jwt' })
      .setIssuer(PORTAL_URL)
      .setAudience(server.url)
      .setIssuedAt(now);
    if (expires) jwt.setExpirationTime(now + 120);
    return jwt.sign(signer.privateKey);
  }

  it("ends the PM session named by sid: the next request of that session is refused; audited, the jti recorded, never cached", async () => {
    const user = await signedInUser();
    const other = await signInPm(server, user.email, user.password);
    const { token, jti } = await portalLogoutToken(server, { sessionId: user.sessionId, subject: user.userId });
    const response = await sendPortalLogoutToken(server, token);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual({});

    expect(await meStatus(server, user.sessionToken)).toBe(401);
    expect(await sessionRevoked(server, user.sessionId)).toEqual({ revoked: true, reason: 'portal_logout' });
    // Only the session the portal came from: the user's other PM session lives on.
    expect(await meStatus(server, other.sessionToken)).toBe(200);
    expect((await auditRows(server.db, 'SsoLogout')).filter((row) => row.userId === user.userId)).toEqual([
      expect.objectContaining({ outcome: 'success', details: expect.objectContaining({ initiatedBy: 'portal', sid: user.sessionId, jti, pmSessionsEnded: 1 }) }),
    ]);
    const receipt = await server.db.maybeOneFirst(sql.unsafe`SELECT receiver FROM backchannel_logout_receipts WHERE jti = ${jti}`);
    expect(receipt).toBe('api-server');
  });

  it('refuses a replayed logout token with a 400 and an audit row', async () => {
    const user = await signedInUser();
    const { token } = await portalLogoutToken(server, { sessionId: user.sessionId });
    expect((await sendPortalLogoutToken(server, token)).status).toBe(200);
    const replay = await sendPortalLogoutToken(server, token);
    expect(replay.status).toBe(400);
    expect(await replay.json()).toEqual({ error: 'invalid_request', error_description: 'the logout token was already received' });
    const rejected = (await auditRows(server.db, 'SsoLogoutTokenRejected')).filter((row) => row.details.sid === user.sessionId);
    expect(rejected).toEqual([expect.objectContaining({ outcome: 'failure', details: expect.objectContaining({ reason: 'replayed', iss: PORTAL_URL }) })]);
  });

  it('with only sub, ends every PM session of that user and of no one else', async () => {
    const user = await signedInUser();
    const second = await signInPm(server, user.email, user.password);
    const bystander = await signedInUser();
    const { token } = await portalLogoutToken(server, { subject: user.userId });
    expect((await sendPortalLogoutToken(server, token)).status).toBe(200);
    expect(await meStatus(server, user.sessionToken)).toBe(401);
    expect(await meStatus(server, second.sessionToken)).toBe(401);
    expect(await meStatus(server, bystander.sessionToken)).toBe(200);
  });

  it('answers 200 for a session that is unknown, already ended, or of another user, and ends nothing', async () => {
    const user = await signedInUser();
    const bystander = await signedInUser();
    for (const claims of [
      { sessionId: randomUUID() },
      { sessionId: 'not-a-session-id' },
      { subject: 'not-a-user-id' },
      // sid and sub together name the session only when it is that user's.
      { sessionId: user.sessionId, subject: bystander.userId },
    ]) {
      expect((await sendPortalLogoutToken(server, (await portalLogoutToken(server, claims)).token)).status, JSON.stringify(claims)).toBe(200);
    }
    expect(await meStatus(server, user.sessionToken)).toBe(200);
    expect(await meStatus(server, bystander.sessionToken)).toBe(200);

    expect((await sendPortalLogoutToken(server, (await portalLogoutToken(server, { sessionId: user.sessionId })).token)).status).toBe(200);
    expect((await sendPortalLogoutToken(server, (await portalLogoutToken(server, { sessionId: user.sessionId })).token)).status).toBe(200);
    expect((await auditRows(server.db, 'SsoLogout')).filter((row) => row.details.sid === user.sessionId).map((row) => row.details.pmSessionsEnded)).toEqual([1]);
  });

  it('refuses each malformed or foreign token with 400 invalid_request, a clear reason, and an audit row with its unverified iss and sid', async () => {
    const user = await signedInUser();
    const { privateKey } = await generateKeyPair('RS256');
    const strangerKey: SigningKey = { kid: randomUUID(), alg: 'RS256', privateKey };
    const authorizationServerKey = await server.app.authorizationServer.keys.activeKey();
    const sid = user.sessionId;
    const cases: Array<[string, Promise<string>, RegExp]> = [
      ['nonce_present', craftedToken({ sid, nonce: 'n-0S6_WzA2Mj' }), /nonce/],
      ['events_missing', craftedToken({ sid, events: {} }), /back-channel logout event/],
      ['events_missing', craftedToken({ sid, events: undefined }), /back-channel logout event/],
      ['sub_and_sid_missing', craftedToken({}), /neither a session \(sid\) nor a subject \(sub\)/],
      ['bad_signature', craftedToken({ sid }, strangerKey), /not signed with one of the Reality Portal's keys/],
      // The api-server's own keys sign tokens for the portal, never the portal's tokens.
      ['bad_signature', craftedToken({ sid }, authorizationServerKey), /not signed with one of the Reality Portal's keys/],
      ['wrong_audience', portalLogoutToken(server, { sessionId: sid, audience: 'https://someone-else.example' }).then((signed) => signed.token), /not addressed to this server/],
      ['wrong_issuer', portalLogoutToken(server, { sessionId: sid, issuer: 'https://impostor.example' }).then((signed) => signed.token), /not issued by the Reality Portal/],
      ['expired', portalLogoutToken(server, { sessionId: sid, now: new Date(Date.now() - 10 * 60_000) }).then((signed) => signed.token), /expired/],
      ['malformed', Promise.resolve('not.a.jwt'), /not a well-formed logout token/],
      // Back-Channel Logout 1.0 section 2.4 requires exp.
      ['malformed', craftedToken({ sid }, undefined, false), /not a well-formed logout token/],
    ];
    for (const [reason, tokenPromise, description] of cases) {
      const before = (await auditRows(server.db, 'SsoLogoutTokenRejected')).length;
      const response = await sendPortalLogoutToken(server, await tokenPromise);
      expect(response.status, reason).toBe(400);
      const body = (await response.json()) as { error: string; error_description: string };
      expect(body.error, reason).toBe('invalid_request');
      expect(body.error_description, reason).toMatch(description);
      const rows = (await auditRows(server.db, 'SsoLogoutTokenRejected')).slice(before);
      expect(rows, reason).toEqual([expect.objectContaining({ outcome: 'failure', actorType: 'client', details: expect.objectContaining({ reason }) })]);
      if (reason !== 'malformed' && reason !== 'sub_and_sid_missing') expect(rows[0]!.details, reason).toMatchObject({ sid });
    }
    expect(await meStatus(server, user.sessionToken)).toBe(200);
  });

  it('answers 400 to a request without a logout_token, and to a JSON body', async () => {
    const missing = await sendPortalLogoutToken(server, undefined);
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: 'invalid_request', error_description: 'logout_token is required' });
    const json = await fetch(`${server.url}/oauth/backchannel-logout`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ logout_token: 'x' }) });
    expect(json.status).toBe(400);
  });

  it("accepts a token from a portal key created after the receiver last read the portal's keys", async () => {
    const first = await signedInUser();
    expect((await sendPortalLogoutToken(server, (await portalLogoutToken(server, { sessionId: first.sessionId })).token)).status).toBe(200);
    // Another process (the worker) rotates the portal's keys: this receiver's cached key set lacks the new one.
    await portalSigningKeys(server).rotate();
    const second = await signedInUser();
    expect((await sendPortalLogoutToken(server, (await portalLogoutToken(server, { sessionId: second.sessionId })).token)).status).toBe(200);
    expect(await meStatus(server, second.sessionToken)).toBe(401);
  });

  it('answers 503 (never 400) when the database fails while ending the session, and honours the same token when it is sent again', async () => {
    const user = await signedInUser();
    const { token, jti } = await portalLogoutToken(server, { sessionId: user.sessionId });
    // A lock wait that timed out (55P03, lock_not_available): a fault that passes.
    await server.db.query(sql.unsafe`
      CREATE FUNCTION refuse_portal_logout() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'simulated lock timeout' USING ERRCODE = '55P03'; END $$`);
    await server.db.query(sql.unsafe`
      CREATE TRIGGER refuse_portal_logout BEFORE UPDATE ON user_sessions FOR EACH ROW
      WHEN (NEW.ended_reason = 'portal_logout') EXECUTE FUNCTION refuse_portal_logout()`);
    try {
      const failed = await sendPortalLogoutToken(server, token);
      expect(failed.status).toBe(503);
      expect(failed.headers.get('retry-after')).toBeTruthy();
      expect(await failed.json()).toMatchObject({ error: 'temporarily_unavailable' });
      expect(await meStatus(server, user.sessionToken)).toBe(200);
      expect(await server.db.maybeOneFirst(sql.unsafe`SELECT jti FROM backchannel_logout_receipts WHERE jti = ${jti}`)).toBeNull();
    } finally {
      await server.db.query(sql.unsafe`DROP TRIGGER refuse_portal_logout ON user_sessions`);
      await server.db.query(sql.unsafe`DROP FUNCTION refuse_portal_logout()`);
    }
    expect((await sendPortalLogoutToken(server, token)).status).toBe(200);
    expect(await meStatus(server, user.sessionToken)).toBe(401);
    expect((await sendPortalLogoutToken(server, token)).status).toBe(400);
  });
});
