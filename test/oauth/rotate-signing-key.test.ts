import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rotateSigningKey } from '../../scripts/rotate-signing-key';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');

/** `npm run rotate-signing-key`, run as an operator would: a child process against the server's database. */
function rotateCommand(environment: Record<string, string>) {
  return run('npx', ['tsx', 'scripts/rotate-signing-key.ts'], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...environment },
    timeout: 60_000,
  });
}

const keyRows = (server: OAuthTestServer) =>
  server.db.any(sql.type(z.object({ id: z.string(), retiredAt: z.number().nullable() }))`
    SELECT id, retired_at AS "retiredAt" FROM oauth_signing_keys ORDER BY created_at`);

describe('the rotate-signing-key command', () => {
  let server: OAuthTestServer;

  beforeAll(async () => {
    server = await startOAuthTestServer({ LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' });
  });
  afterAll(() => server?.close());

  it('makes a new key active, retires the old one, and keeps the old one verifying during the grace period', async () => {
    const client = await server.createClient({ kind: 'service', grantTypes: ['client_credentials'], redirectUris: [] });
    const before = await server.app.authorizationServer.tokens.issue(server.db, { client: client.client, userId: null, grantId: null, familyId: null, scopes: ['properties:read'] }, false);
    const [oldKey] = await keyRows(server);
    expect(oldKey).toMatchObject({ retiredAt: null });

    const { stdout } = await rotateCommand({
      DATABASE_URL: server.config.databaseUrl!,
      INTEGRATION_ENCRYPTION_KEY: server.config.encryption.activeKey!,
      OAUTH_SIGNING_KEY_GRACE_SECONDS: '3600',
    });

    const keys = await keyRows(server);
    expect(keys).toHaveLength(2);
    const [retired, active] = keys;
    expect(retired!.id).toBe(oldKey!.id);
    expect(retired!.retiredAt).toEqual(expect.any(Number));
    expect(active!.retiredAt).toBeNull();
    expect(stdout).toContain(`new signing key ${active!.id} is active`);
    expect(stdout).toContain(`previous key ${oldKey!.id} is retired`);
    expect(stdout).toContain(new Date(retired!.retiredAt! + 3600 * 1000).toISOString());

    // The server signs with the new key at once; tokens signed by the old one still verify.
    expect((await server.app.authorizationServer.keys.activeKey()).kid).toBe(active!.id);
    const jwks = await server.app.authorizationServer.keys.publicKeySet();
    expect(jwks.keys.map((key) => key.kid)).toEqual([active!.id, oldKey!.id]);
    expect(await server.app.authorizationServer.tokens.verifyAccessToken(before.access_token)).toMatchObject({ client_id: client.client.id });

    const audit = await server.db.one(sql.type(z.object({ actorType: z.string(), details: z.record(z.unknown()) }))`
      SELECT actor_type AS "actorType", details FROM audit_log WHERE action = 'OAuthSigningKeyRotate'`);
    expect(audit).toMatchObject({ actorType: 'operator', details: { kid: active!.id, previous_kid: oldKey!.id, grace_seconds: 3600 } });
    expect(JSON.stringify(audit.details)).not.toMatch(/"d"|private/);
  });

  it('rotates and audits in one transaction: when the audit row cannot be written, no key changes', async () => {
    const keysBefore = await keyRows(server);
    expect(keysBefore.some((key) => key.retiredAt === null)).toBe(true);
    await server.db.query(sql.unsafe`
      CREATE FUNCTION refuse_rotation_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'audit_log is unavailable'; END $$`);
    await server.db.query(sql.unsafe`
      CREATE TRIGGER refuse_rotation_audit BEFORE INSERT ON audit_log
      FOR EACH ROW WHEN (NEW.action = 'OAuthSigningKeyRotate') EXECUTE FUNCTION refuse_rotation_audit()`);
    try {
      await expect(rotateSigningKey(server.db, server.crypto, 3600, 'test')).rejects.toThrow(/audit_log is unavailable/);
    } finally {
      await server.db.query(sql.unsafe`DROP TRIGGER refuse_rotation_audit ON audit_log`);
      await server.db.query(sql.unsafe`DROP FUNCTION refuse_rotation_audit()`);
    }
    expect(await keyRows(server)).toEqual(keysBefore);

    // And with the audit log back, the function reports what the audit row says.
    const result = await rotateSigningKey(server.db, server.crypto, 3600, 'test');
    const active = keysBefore.find((key) => key.retiredAt === null)!;
    expect(result.previousKid).toBe(active.id);
    const [row] = await server.db.any(sql.type(z.object({ details: z.record(z.unknown()) }))`
      SELECT details FROM audit_log WHERE action = 'OAuthSigningKeyRotate' AND details->>'kid' = ${result.kid}`);
    expect(row?.details).toMatchObject({ previous_kid: active.id, previous_leaves_jwks_at: result.previousLeavesJwksAt!.toISOString() });
  });

  it('stops with exit code 2 and names what is missing when the configuration is incomplete', async () => {
    const keysBefore = (await keyRows(server)).length;
    const failure = await rotateCommand({ DATABASE_URL: server.config.databaseUrl! }).then(
      () => undefined,
      (error: { code?: number; stderr?: string }) => error,
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toContain('INTEGRATION_ENCRYPTION_KEY');
    expect(await keyRows(server)).toHaveLength(keysBefore);
  });
});
