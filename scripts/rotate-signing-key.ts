import { userInfo } from 'node:os';
import { pathToFileURL } from 'node:url';
import type { DatabasePool } from 'slonik';
import { createDatabasePool } from '../db/pool';
import { AuditLog } from '../platform/audit';
import { ConfigError, loadConfig } from '../platform/config';
import type { IntegrationCrypto } from '../platform/integration-crypto';
import { SigningKeys } from '../platform/oauth-server/signing-keys';
import { createIntegrationCrypto } from '../platform/services';

/**
 * `npm run rotate-signing-key`: creates a new access-token signing key and retires the previous one.
 * The new key signs from now on; the previous key stays in the JWKS (so tokens it signed still
 * verify) for OAUTH_SIGNING_KEY_GRACE_SECONDS, which should be at least the access-token lifetime.
 * Running servers pick the new key up on their next signature (they read the newest key's id each time)
 * and verify with it within 30 s (their cached key set is refetched when a token names an unknown kid).
 */

export interface RotationResult {
  kid: string;
  /** The key that signed until now, or undefined when there was none. */
  previousKid: string | undefined;
  /** When the previous key leaves the JWKS. */
  previousLeavesJwksAt: Date | undefined;
}

/** Rotates the key and writes its audit row in one transaction: both happen, or neither. */
export async function rotateSigningKey(db: DatabasePool, crypto: IntegrationCrypto, graceSeconds: number, actorId: string): Promise<RotationResult> {
  const leavesJwksAt = (retiredAt: Date | undefined) => (retiredAt ? new Date(retiredAt.getTime() + graceSeconds * 1000) : undefined);
  const rotation = await new SigningKeys(db, crypto, graceSeconds).rotate(async ({ kid, previousKid, retiredAt }, transaction) => {
    await new AuditLog(db).record(
      {
        action: 'OAuthSigningKeyRotate',
        outcome: 'success',
        actor: { type: 'operator', id: actorId },
        details: {
          kid,
          previous_kid: previousKid ?? null,
          grace_seconds: graceSeconds,
          previous_leaves_jwks_at: leavesJwksAt(retiredAt)?.toISOString() ?? null,
        },
      },
      transaction,
    );
  });
  return { kid: rotation.kid, previousKid: rotation.previousKid, previousLeavesJwksAt: leavesJwksAt(rotation.retiredAt) };
}

/** The operator's login name, as audit rows name the operator; `cli` when the system cannot say. */
export function operatorName(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}

/** The whole command: configuration from the environment, progress on stdout; answers the exit code. */
export async function runRotateSigningKey(actorId: string): Promise<number> {
  let crypto: IntegrationCrypto;
  let databaseUrl: string;
  let graceSeconds: number;
  try {
    const config = loadConfig(process.env, ['DATABASE_URL', 'INTEGRATION_ENCRYPTION_KEY']);
    crypto = createIntegrationCrypto(config);
    if (!config.databaseUrl) throw new ConfigError(['DATABASE_URL: is required to rotate the signing key']);
    databaseUrl = config.databaseUrl;
    graceSeconds = config.authorizationServer.signingKeyGraceSeconds;
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`rotate-signing-key: ${error.message}`);
      return 2;
    }
    throw error;
  }

  const pool = await createDatabasePool(databaseUrl, { maximumPoolSize: 1 });
  try {
    const result = await rotateSigningKey(pool, crypto, graceSeconds, actorId);
    console.log(`rotate-signing-key: new signing key ${result.kid} is active`);
    if (result.previousKid && result.previousLeavesJwksAt) {
      console.log(
        `rotate-signing-key: previous key ${result.previousKid} is retired; tokens it signed verify until it leaves the JWKS at ${result.previousLeavesJwksAt.toISOString()} (grace ${graceSeconds} s)`,
      );
    } else {
      console.log('rotate-signing-key: there was no previous key');
    }
  } finally {
    await pool.end();
  }
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await runRotateSigningKey(operatorName());
}
