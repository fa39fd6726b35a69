import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM for every secret the platform stores (design invariant 6).
 *
 * An envelope is `v1.<keyId>.<iv>.<ciphertext>.<tag>` (base64url parts). The key id travels with the
 * ciphertext so that old keys stay readable after rotation, and the associated data binds each
 * value to its table, column and row, so a ciphertext copied into another row or column fails to decrypt.
 */

const ENVELOPE_VERSION = 'v1';
const IV_BYTES = 12;
// Node accepts GCM tags down to 4 bytes unless told otherwise; a short tag would be easy to forge.
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;
const BASE64_KEY_PATTERN = /^[A-Za-z0-9+/]{43}=?$/;

export interface FieldBinding {
  table: string;
  column: string;
  rowId: string;
}

export class KeyFormatError extends Error {
  override name = 'KeyFormatError';
}

export class DecryptionError extends Error {
  override name = 'DecryptionError';
}

export interface EncryptionKey {
  id: string;
  material: Buffer;
}

/** One AES-256-GCM encryption: a fresh random 96-bit IV, a 128-bit tag. Shared by IntegrationCrypto and the payload codec. */
export interface SealedBytes {
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

export const AES_GCM_IV_BYTES = IV_BYTES;
export const AES_GCM_TAG_BYTES = TAG_BYTES;

export function sealAesGcm(key: Buffer, plaintext: Uint8Array, associated: Uint8Array): SealedBytes {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(associated);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv, ciphertext, tag: cipher.getAuthTag() };
}

/** Throws when the tag does not verify (wrong key, altered bytes, other associated data). */
export function openAesGcm(key: Buffer, sealed: SealedBytes, associated: Uint8Array): Buffer {
  if (sealed.iv.length !== IV_BYTES) throw new DecryptionError('malformed IV');
  if (sealed.tag.length !== TAG_BYTES) throw new DecryptionError('malformed authentication tag');
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(associated);
  decipher.setAuthTag(sealed.tag);
  return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
}

/** The active key (writes) and every readable key (reads), by id. */
export class KeyRing {
  private readonly keys: Map<string, Buffer>;

  constructor(readonly active: EncryptionKey, readable: EncryptionKey[] = []) {
    this.keys = new Map(readable.map((key) => [key.id, key.material]));
    this.keys.set(active.id, active.material);
  }

  readable(keyId: string): Buffer | undefined {
    return this.keys.get(keyId);
  }
}

/**
 * Parses `<keyId>:<base64 key>` or a bare base64 key (its id is then derived from the key itself,
 * so the same key always gets the same id). The key must decode to exactly 32 bytes.
 */
export function parseEncryptionKey(text: string, variableName = 'INTEGRATION_ENCRYPTION_KEY'): EncryptionKey {
  const separator = text.indexOf(':');
  const explicitId = separator >= 0 ? text.slice(0, separator) : undefined;
  const encoded = separator >= 0 ? text.slice(separator + 1) : text;
  if (explicitId !== undefined && !KEY_ID_PATTERN.test(explicitId)) {
    throw new KeyFormatError(`${variableName}: key id "${explicitId}" must be 1-32 letters, digits, '-' or '_'`);
  }
  // Buffer.from() skips characters it cannot decode, so the shape is checked before decoding.
  if (!BASE64_KEY_PATTERN.test(encoded)) {
    throw new KeyFormatError(`${variableName}: must be 32 bytes in base64 (optionally prefixed by "<keyId>:")`);
  }
  const material = Buffer.from(encoded, 'base64');
  const id = explicitId ?? `k${createHash('sha256').update(material).digest('hex').slice(0, 12)}`;
  return { id, material };
}

export function generateEncryptionKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

function associatedData(binding: FieldBinding): Buffer {
  return Buffer.from(`${binding.table}\u0000${binding.column}\u0000${binding.rowId}`, 'utf8');
}

export class IntegrationCrypto {
  private readonly ring: KeyRing;

  constructor(private readonly active: EncryptionKey, readable: EncryptionKey[] = []) {
    this.ring = new KeyRing(active, readable);
  }

  static fromKeyTexts(activeKey: string, previousKeys: string[] = []): IntegrationCrypto {
    return new IntegrationCrypto(
      parseEncryptionKey(activeKey),
      previousKeys.map((key) => parseEncryptionKey(key, 'INTEGRATION_ENCRYPTION_PREVIOUS_KEYS')),
    );
  }

  get activeKeyId(): string {
    return this.active.id;
  }

  encrypt(plaintext: string, binding: FieldBinding): string {
    const { iv, ciphertext, tag } = sealAesGcm(this.active.material, Buffer.from(plaintext, 'utf8'), associatedData(binding));
    return [ENVELOPE_VERSION, this.active.id, iv, ciphertext, tag]
      .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
      .join('.');
  }

  decrypt(envelope: string, binding: FieldBinding): string {
    const [version, keyId, iv, ciphertext, tag, ...rest] = envelope.split('.');
    if (version !== ENVELOPE_VERSION || !keyId || iv === undefined || ciphertext === undefined || !tag || rest.length > 0) {
      throw new DecryptionError(`${binding.table}.${binding.column}: not an encrypted value`);
    }
    if (Buffer.from(iv, 'base64url').length !== IV_BYTES) throw new DecryptionError(`${binding.table}.${binding.column}: malformed IV`);
    const key = this.ring.readable(keyId);
    if (!key) throw new DecryptionError(`${binding.table}.${binding.column}: encrypted with unknown key "${keyId}"`);
    try {
      const sealed = { iv: Buffer.from(iv, 'base64url'), ciphertext: Buffer.from(ciphertext, 'base64url'), tag: Buffer.from(tag, 'base64url') };
      return openAesGcm(key, sealed, associatedData(binding)).toString('utf8');
    } catch {
      throw new DecryptionError(`${binding.table}.${binding.column}: value was altered, or belongs to another row or column`);
    }
  }

  /** True when the value is readable but was encrypted under a key other than the active one. */
  needsReencryption(envelope: string): boolean {
    return envelope.split('.')[1] !== this.active.id;
  }
}
