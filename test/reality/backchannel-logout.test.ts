import { randomUUID } from 'node:crypto';
import { generateKeyPair, SignJWT } from 'jose';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { SigningKey } from '../../platform/oauth-server/signing-keys';
import { createPortalUser } from '../../platform/portal/users';
import { apiServerKeySet } from '../../platform/sso/api-server-keys';
import { BACKCHANNEL_LOGOUT_EVENT } from '../../platform/sso/logout-tokens';
import { freePort } from '../helpers/ports';
import { startRealityTestServers, type RealityTestServers } from '../helpers/reality';

/** OpenID Connect Back-Channel Logout 1.0, section 2.8: the portal receives the api-server's logout tokens. */
describe('back-channel logout receiver', () => {
  let servers: RealityTestServers;

  beforeAll(async () => {
    // A short lock timeout, so a held lock makes a delivery fail quickly (the database fault of the retry test).
    servers = await startRealityTestServers({ realityEnvironment: { DATABASE_LOCK_TIMEOUT_MS: '300' } });
  });

  afterAll(async () => {
    await servers?.close();
  });

  const deliver = (logoutToken: string) =>
    fetch(`${servers.url}/sso/backchannel-logout`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: logoutToken }).toString(),
    });

  async function ssoSession(pm?: Awaited<ReturnType<RealityTestServers['signInPmUser']>>) {
    const signedIn = pm ?? (await servers.signInPmUser());
    const { sessionToken, portalSessionId } = await servers.apiPortalSession(signedIn);
    return { pm: signedIn, sessionToken, id: portalSessionId };
  }

  const endReason = (portalSessionId: string) =>
    servers.db.oneFirst(sql.type(z.object({ reason: z.string().nullable() }))`SELECT ended_reason AS reason FROM portal_sessions WHERE id = ${portalSessionId}`);

  const received = (jti: string) =>
    servers.db.exists(sql.unsafe`SELECT 1 FROM backchannel_logout_receipts WHERE receiver = 'reality-server' AND jti = ${jti}`);

  /** A logout token with any claims, signed with the api-server's key unless told otherwise. */
  async function craftedToken(claims: Record<string, unknown>, options: { key?: SigningKey['privateKey']; kid?: string } = {}) {
    const key = options.key ? { kid: options.kid ?? randomUUID(), privateKey: options.key } : await servers.authorizationServerKeys.activeKey();
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: servers.api.config.authorizationServer.issuer, aud: servers.config.sso.portal.clientId, iat: now, exp: now + 120, jti: randomUUID(), ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'logout+jwt' })
      .sign(key.privateKey);
  }

  it('answers a request its schema or body parser refuses (JSON, a prototype key, a NUL) with an RFC 6749 invalid_request', async () => {
    for (const [contentType, body] of [
      ['application/json', '{"__proto__":{"polluted":true},"logout_token":"x"}'],
      ['application/json', '{"logout_token":'],
      ['application/x-www-form-urlencoded', 'logout_token=a%00b'],
    ]) {
      const response = await fetch(`${servers.url}/sso/backchannel-logout`, { method: 'POST', headers: { 'content-type': contentType! }, body });
      expect(response.status, body).toBe(400);
      expect(await response.json(), body).toMatchObject({ error: 'invalid_request', error_description: expect.any(String) });
    }
  });

  it("ends the portal sessions of the token's sid, records the jti after, and answers 200 with no-store", async () => {
    const session = await ssoSession();
    const token = await servers.mintLogoutToken({ sessionId: session.pm.sessionId, subject: session.pm.user.id });
    const response = await deliver(token);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await endReason(session.id)).toBe('pm_logout');
    const audit = (await servers.auditRows('SsoLogout')).filter((row) => row.details.portalSessionId === session.id);
    expect(audit).toEqual([expect.objectContaining({ userId: session.pm.user.id, details: expect.objectContaining({ initiatedBy: 'pm', reason: 'pm_logout' }) })]);
    const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string;
    expect(await received(jti)).toBe(true);
    const me = await fetch(`${servers.url}/api/v1/portal/me`, { headers: { authorization: `Bearer ${session.sessionToken}` } });
    expect(me.status).toBe(401);
  });

  it('ends every SSO session of the PM user when the token names only sub, and leaves portal-only sessions alone', async () => {
    const pm = await servers.signInPmUser();
    const first = await ssoSession(pm);
    const second = await ssoSession(pm);
    const other = await ssoSession();
    await createPortalUser(servers.db, { email: pm.user.email, displayName: 'Portal only', password: 'portal-only password 1' });

    expect((await deliver(await servers.mintLogoutToken({ subject: pm.user.id }))).status).toBe(200);
    expect(await endReason(first.id)).toBe('pm_logout');
    expect(await endReason(second.id)).toBe('pm_logout');
    expect(await endReason(other.id)).toBeNull();
  });

  it('answers 200 for a session that is unknown or has ended already', async () => {
    expect((await deliver(await servers.mintLogoutToken({ sessionId: randomUUID() }))).status).toBe(200);
    const session = await ssoSession();
    expect((await deliver(await servers.mintLogoutToken({ sessionId: session.pm.sessionId }))).status).toBe(200);
    expect((await deliver(await servers.mintLogoutToken({ sessionId: session.pm.sessionId }))).status).toBe(200);
  });

  it('refuses a replayed token with 400 invalid_request and an audit row', async () => {
    const session = await ssoSession();
    const token = await servers.mintLogoutToken({ sessionId: session.pm.sessionId });
    expect((await deliver(token)).status).toBe(200);
    const replay = await deliver(token);
    expect(replay.status).toBe(400);
    expect(await replay.json()).toMatchObject({ error: 'invalid_request' });
    const rejected = (await servers.auditRows('SsoLogoutTokenRejected')).at(-1)!;
    expect(rejected.details).toMatchObject({ reason: 'replayed', sid: session.pm.sessionId });
  });

  it('refuses tokens with a nonce, without events, without sub and sid, with a bad signature or for another audience', async () => {
    const session = await ssoSession();
    const sid = session.pm.sessionId;
    const events = { [BACKCHANNEL_LOGOUT_EVENT]: {} };
    const cases = [
      { reason: 'nonce_present', token: await craftedToken({ sid, events, nonce: 'n-1' }) },
      { reason: 'events_missing', token: await craftedToken({ sid }) },
      { reason: 'events_missing', token: await craftedToken({ sid, events: { 'http://example.com/other-event': {} } }) },
      { reason: 'sub_and_sid_missing', token: await craftedToken({ events }) },
      // The api-server's kid with another key: an unknown kid is only refused once the key set was fetched for it.
      { reason: 'bad_signature', token: await craftedToken({ sid, events }, { key: (await generateKeyPair('RS256')).privateKey, kid: (await servers.authorizationServerKeys.activeKey()).kid }) },
      { reason: 'wrong_audience', token: await craftedToken({ sid, events, aud: 'another-client' }) },
      { reason: 'malformed', token: 'not-a-jwt' },
    ];
    for (const { reason, token } of cases) {
      const response = await deliver(token);
      expect(response.status, reason).toBe(400);
      expect(await response.json()).toMatchObject({ error: 'invalid_request' });
      expect((await servers.auditRows('SsoLogoutTokenRejected')).at(-1)!.details, reason).toMatchObject({ reason });
    }
    expect((await deliver('')).status).toBe(400);
    expect(await endReason(session.id)).toBeNull();
  });

  it('answers 503 on a database fault without recording the jti, so the retried delivery ends the session', async () => {
    const session = await ssoSession();
    const token = await servers.mintLogoutToken({ sessionId: session.pm.sessionId });
    const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string;
    let release!: () => void;
    let locked!: () => void;
    const lockTaken = new Promise<void>((resolve) => (locked = resolve));
    const holding = servers.api.db.transaction(async (transaction) => {
      await transaction.query(sql.unsafe`SELECT 1 FROM portal_sessions WHERE id = ${session.id} FOR UPDATE`);
      locked();
      await new Promise<void>((resolve) => (release = resolve));
    });
    await lockTaken;
    try {
      const first = await deliver(token);
      expect(first.status).toBe(503);
      expect(first.headers.get('retry-after')).toBeDefined();
      expect(await received(jti)).toBe(false);
      expect(await endReason(session.id)).toBeNull();
    } finally {
      release();
      await holding;
    }
    const retry = await deliver(token);
    expect(retry.status).toBe(200);
    expect(await endReason(session.id)).toBe('pm_logout');
    expect(await received(jti)).toBe(true);
  });

  it("answers 503 when the api-server's keys cannot be fetched", async () => {
    const session = await ssoSession();
    const cutOff = await servers.otherPortal({ apiServerKeys: apiServerKeySet(`http://127.0.0.1:${await freePort()}`, { timeoutMs: servers.config.sso.portal.apiServerTimeoutMs }) });
    try {
      const response = await cutOff.inject({
        method: 'POST',
        url: '/sso/backchannel-logout',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ logout_token: await servers.mintLogoutToken({ sessionId: session.pm.sessionId }) }).toString(),
      });
      expect(response.statusCode).toBe(503);
      expect(response.json()).toMatchObject({ error: 'temporarily_unavailable' });
    } finally {
      await cutOff.close();
    }
    expect(await endReason(session.id)).toBeNull();
  });
});
