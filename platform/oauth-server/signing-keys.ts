import { randomUUID } from 'node:crypto';
import { createLocalJWKSet, exportJWK, generateKeyPair, importJWK, type JSONWebKeySet, type JWK } from 'jose';
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

/** How long a process trusts its copy of the verification key set (a rotation in this process resets it at once). */
const KEY_SET_CACHE_MS = 30_000;

type PrivateKey = Awaited<ReturnType<typeof importJWK>>;
type VerificationKeys = ReturnType<typeof createLocalJWKSet>;

export interface Rotation {
  kid: string;
  /** The key that signed until now, or undefined when there was none. */
  previousKid: string | undefined;
  /** When the previous key was retired (it leaves the JWKS a grace period later). */
  retiredAt: Date | undefined;
}

/** Whose keys: the authorization server's (tokens, id_tokens, SSO and logout tokens) or the reality-server's (its logout tokens). */
export type SigningKeyOwner = 'authorization-server' | 'reality-server';

export interface SigningKey {
  kid: string;
  alg: typeof ALGORITHM;
  privateKey: PrivateKey;
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
    private readonly owner: SigningKeyOwner = 'authorization-server',
  ) {}

  /** Imported private keys by kid: each is decrypted and imported once per process. */
  private readonly privateKeys = new Map<string, Promise<PrivateKey>>();
  private keySetCache: { fetchedAt: number; keys: VerificationKeys } | undefined;
  private keySetFetch: Promise<VerificationKeys> | undefined;

  /**
   * Creates a new signing key and retires the previous one (it keeps verifying during the grace
   * period). `within` runs in the same transaction (the caller's audit row), so the rotation and
   * its record commit together or not at all.
   */
  async rotate(within?: (rotation: Rotation, transaction: CommonQueryMethods) => Promise<void>): Promise<Rotation> {
    const rotation = await this.db.transaction(async (transaction) => {
      await transaction.query(sql.unsafe`SELECT pg_advisory_xact_lock(${KEY_CREATION_LOCK})`);
      const result = await this.createKey(transaction);
      await within?.(result, transaction);
      return result;
    });
    this.forgetVerificationKeys();
    return rotation;
  }

  private async createKey(db: CommonQueryMethods): Promise<Rotation> {
    const kid = randomUUID();
    const { publicKey, privateKey } = await generateKeyPair(ALGORITHM, { extractable: true });
    const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: ALGORITHM, use: 'sig' };
    const privateJwk = JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg: ALGORITHM });
    const retired = await db.maybeOne(sql.type(z.object({ id: z.string(), retiredAt: z.number() }))`
      UPDATE oauth_signing_keys SET retired_at = now() WHERE retired_at IS NULL AND owner = ${this.owner}
      RETURNING id, retired_at AS "retiredAt"`);
    await db.query(sql.unsafe`
      INSERT INTO oauth_signing_keys (id, alg, public_jwk, private_jwk_enc, owner)
      VALUES (${kid}, ${ALGORITHM}, ${sql.jsonb(publicJwk)}, ${this.crypto.encrypt(privateJwk, privateKeyColumn(kid))}, ${this.owner})`);
    return { kid, previousKid: retired?.id, retiredAt: retired ? new Date(retired.retiredAt) : undefined };
  }

  /**
   * The key that signs now; the first call on an empty database creates one. Pass the open
   * transaction when there is one: slonik refuses pool queries inside a transaction's context.
   */
  async activeKey(db: CommonQueryMethods = this.db): Promise<SigningKey> {
    const newest = (connection: CommonQueryMethods) =>
      connection.maybeOne(sql.type(keyRow)`${this.selectKeys()} AND retired_at IS NULL ORDER BY created_at DESC LIMIT 1`);
    const row =
      (await newest(db)) ??
      (await db.transaction(async (transaction) => {
        // Two processes starting on an empty database must not both create (and retire each other's) keys.
        await transaction.query(sql.unsafe`SELECT pg_advisory_xact_lock(${KEY_CREATION_LOCK})`);
        const existing = await newest(transaction);
        if (existing) return existing;
        const { kid } = await this.createKey(transaction);
        this.forgetVerificationKeys();
        return transaction.one(sql.type(keyRow)`${this.selectKeys()} AND id = ${kid}`);
      }));
    return { kid: row.id, alg: ALGORITHM, privateKey: await this.privateKey(row) };
  }

  private privateKey(row: z.infer<typeof keyRow>): Promise<PrivateKey> {
    let key = this.privateKeys.get(row.id);
    if (!key) {
      const jwk = JSON.parse(this.crypto.decrypt(row.privateJwkEnc, privateKeyColumn(row.id))) as JWK;
      key = importJWK(jwk, ALGORITHM);
      this.privateKeys.set(row.id, key);
      // A failed import is not cached.
      key.catch(() => this.privateKeys.delete(row.id));
    }
    return key;
  }

  /** Drops the cached verification key set: the next verification reads the keys again. */
  forgetVerificationKeys(): void {
    this.keySetCache = undefined;
  }

  /**
   * The key set access tokens are verified against, cached for KEY_SET_CACHE_MS. `fresh` (a token
   * whose kid the cached set lacks: another process may have rotated) reads the keys again; concurrent
   * reads share one query. That costs what every verification cost before the cache, so a caller
   * inventing kids gains nothing. A retired key may verify up to KEY_SET_CACHE_MS past its grace
   * period; the tokens it signed have expired by then (the grace is at least the access-token lifetime).
   */
  async verificationKeys(options: { fresh?: boolean } = {}): Promise<VerificationKeys> {
    if (!options.fresh && this.keySetCache && Date.now() - this.keySetCache.fetchedAt < KEY_SET_CACHE_MS) return this.keySetCache.keys;
    this.keySetFetch ??= this.publicKeySet()
      .then((set) => {
        const keys = createLocalJWKSet(set);
        this.keySetCache = { fetchedAt: Date.now(), keys };
        return keys;
      })
      .finally(() => {
        this.keySetFetch = undefined;
      });
    return this.keySetFetch;
  }

  /** Public keys of every key that may still have signed a live token. */
  async publicKeySet(): Promise<JSONWebKeySet> {
    const rows = await this.db.any(sql.type(keyRow)`
      ${this.selectKeys()}
      AND (retired_at IS NULL OR retired_at > now() - make_interval(secs => ${this.graceSeconds}))
      ORDER BY created_at DESC`);
    return { keys: rows.map((row) => row.publicJwk as JWK) };
  }

  private selectKeys() {
    return sql.fragment`SELECT id, public_jwk AS "publicJwk", private_jwk_enc AS "privateJwkEnc", created_at AS "createdAt", retired_at AS "retiredAt" FROM oauth_signing_keys WHERE owner = ${this.owner}`;
  }
}
