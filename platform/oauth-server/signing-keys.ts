import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type JSONWebKeySet, type JWK } from 'jose';
import { sql, type CommonQueryMethods, type DatabasePool } from 'slonik';
import { z } from 'zod';
import type { IntegrationCrypto } from '../integration-crypto';

const ALGORITHM = 'RS256';

const keyRow = z.object({
  id: z.string(),
  publicJwk: z.record(z.unknown()),
  privateJwkEnc: z.string(),
  createdAt: z.number(),
  retiredAt: z.number().nullable(),
});

const privateKeyColumn = (id: string) => ({ table: 'oauth_signing_keys', column: 'private_jwk_enc', rowId: id });

// Any constant works; it serialises key creation across processes.
const KEY_CREATION_LOCK = 870_002;

export interface SigningKey {
  kid: string;
  alg: typeof ALGORITHM;
  privateKey: Awaited<ReturnType<typeof importJWK>>;
}

/**
 * The access-token signing keys. The newest unretired key signs; a retired key stays in the JWKS
 * (so tokens it signed still verify) until the grace period after its retirement has passed.
 * Private keys are stored as IntegrationCrypto envelopes, never in plaintext.
 */
export class SigningKeys {
  constructor(
    private readonly db: DatabasePool,
    private readonly crypto: IntegrationCrypto,
    private readonly graceSeconds: number,
  ) {}

  /** Creates a new signing key and retires the previous one (it keeps verifying during the grace period). */
  async rotate(): Promise<string> {
    return this.db.transaction(async (transaction) => {
      await transaction.query(sql.unsafe`SELECT pg_advisory_xact_lock(${KEY_CREATION_LOCK})`);
      return this.createKey(transaction);
    });
  }

  private async createKey(db: CommonQueryMethods): Promise<string> {
    const kid = randomUUID();
    const { publicKey, privateKey } = await generateKeyPair(ALGORITHM, { extractable: true });
    const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: ALGORITHM, use: 'sig' };
    const privateJwk = JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg: ALGORITHM });
    await db.query(sql.unsafe`UPDATE oauth_signing_keys SET retired_at = now() WHERE retired_at IS NULL`);
    await db.query(sql.unsafe`
      INSERT INTO oauth_signing_keys (id, alg, public_jwk, private_jwk_enc)
      VALUES (${kid}, ${ALGORITHM}, ${sql.jsonb(publicJwk)}, ${this.crypto.encrypt(privateJwk, privateKeyColumn(kid))})`);
    return kid;
  }

  /**
   * The key that signs now; the first call on an empty database creates one. Pass the open
   * transaction when there is one: slonik refuses pool queries inside a transaction's context.
   */
  async activeKey(db: CommonQueryMethods = this.db): Promise<SigningKey> {
    const newest = (connection: CommonQueryMethods) =>
      connection.maybeOne(sql.type(keyRow)`${this.selectKeys()} WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1`);
    const row =
      (await newest(db)) ??
      (await db.transaction(async (transaction) => {
        // Two processes starting on an empty database must not both create (and retire each other's) keys.
        await transaction.query(sql.unsafe`SELECT pg_advisory_xact_lock(${KEY_CREATION_LOCK})`);
        return (await newest(transaction)) ?? transaction.one(sql.type(keyRow)`${this.selectKeys()} WHERE id = ${await this.createKey(transaction)}`);
      }));
    const jwk = JSON.parse(this.crypto.decrypt(row.privateJwkEnc, privateKeyColumn(row.id))) as JWK;
    return { kid: row.id, alg: ALGORITHM, privateKey: await importJWK(jwk, ALGORITHM) };
  }

  /** Public keys of every key that may still have signed a live token. */
  async publicKeySet(): Promise<JSONWebKeySet> {
    const rows = await this.db.any(sql.type(keyRow)`
      ${this.selectKeys()}
      WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => ${this.graceSeconds})
      ORDER BY created_at DESC`);
    return { keys: rows.map((row) => row.publicJwk as JWK) };
  }

  private selectKeys() {
    return sql.fragment`SELECT id, public_jwk AS "publicJwk", private_jwk_enc AS "privateJwkEnc", created_at AS "createdAt", retired_at AS "retiredAt" FROM oauth_signing_keys`;
  }
}
