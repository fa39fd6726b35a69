import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  DecryptionError,
  generateEncryptionKey,
  IntegrationCrypto,
  KeyFormatError,
  parseEncryptionKey,
  type FieldBinding,
} from '../../platform/integration-crypto';

const KEY_A = `key-a:${generateEncryptionKey()}`;
const KEY_B = `key-b:${generateEncryptionKey()}`;
const binding: FieldBinding = { table: 'integration_connections', column: 'refresh_token_enc', rowId: '7b0c5f1e-4a43-4a39-9d1e-0d4f6f5b2c11' };

function parts(envelope: string) {
  const [version, keyId, iv, ciphertext, tag] = envelope.split('.');
  return { version, keyId, iv: iv ?? '', ciphertext: ciphertext ?? '', tag: tag ?? '' };
}

/** Flips the lowest bit of the first byte of one base64url part of the envelope. */
function flipBit(envelope: string, part: 2 | 3 | 4): string {
  const pieces = envelope.split('.');
  const bytes = Buffer.from(pieces[part] ?? '', 'base64url');
  bytes[0] = (bytes[0] ?? 0) ^ 0x01;
  pieces[part] = bytes.toString('base64url');
  return pieces.join('.');
}

describe('IntegrationCrypto', () => {
  const crypto = IntegrationCrypto.fromKeyTexts(KEY_A);

  it.each([
    ['an ordinary token', 'ya29.a0AfH6SMBx-refresh-token'],
    ['the empty string', ''],
    ['unicode', 'Žluťoučký kůň 🐎 — 日本語 \u0000 end'],
    ['a long value', 'x'.repeat(10_000)],
  ])('round-trips %s', (_label, plaintext) => {
    const envelope = crypto.encrypt(plaintext, binding);
    expect(crypto.decrypt(envelope, binding)).toBe(plaintext);
  });

  it('writes a v1 envelope carrying the active key id', () => {
    const envelope = crypto.encrypt('secret', binding);
    expect(envelope.split('.')).toHaveLength(5);
    expect(parts(envelope).version).toBe('v1');
    expect(parts(envelope).keyId).toBe('key-a');
    expect(crypto.activeKeyId).toBe('key-a');
  });

  it('uses a fresh 96-bit IV per value, so equal values encrypt differently', () => {
    const first = crypto.encrypt('same value', binding);
    const second = crypto.encrypt('same value', binding);
    expect(first).not.toBe(second);
    expect(parts(first).iv).not.toBe(parts(second).iv);
    expect(Buffer.from(parts(first).iv, 'base64url')).toHaveLength(12);
    expect(Buffer.from(parts(second).iv, 'base64url')).toHaveLength(12);
    expect(Buffer.from(parts(first).tag, 'base64url')).toHaveLength(16);
  });

  it('never puts the plaintext (or an encoding of it) into the envelope', () => {
    const plaintext = 'refresh-token-PLAINTEXT-marker-1234567890';
    const envelope = crypto.encrypt(plaintext, binding);
    expect(envelope).not.toContain(plaintext);
    expect(envelope).not.toContain('PLAINTEXT');
    expect(envelope).not.toContain(Buffer.from(plaintext).toString('base64url').slice(0, 16));
    expect(envelope).not.toContain(Buffer.from(plaintext).toString('base64').slice(0, 16));
  });

  describe('tamper detection', () => {
    const envelope = crypto.encrypt('a value worth protecting', binding);

    it.each([
      ['the iv', 2],
      ['the ciphertext', 3],
      ['the tag', 4],
    ] as const)('rejects a flipped bit in %s', (_label, part) => {
      const tampered = flipBit(envelope, part);
      expect(tampered).not.toBe(envelope);
      expect(() => crypto.decrypt(tampered, binding)).toThrow(DecryptionError);
    });

    it('rejects a truncated tag (GCM accepts short tags unless the length is enforced)', () => {
      for (const length of [4, 8, 12, 15]) {
        const pieces = envelope.split('.');
        pieces[4] = Buffer.from(pieces[4] ?? '', 'base64url').subarray(0, length).toString('base64url');
        expect(() => crypto.decrypt(pieces.join('.'), binding), `${length}-byte tag`).toThrow(DecryptionError);
      }
    });

    it('rejects a malformed envelope', () => {
      expect(() => crypto.decrypt('not an envelope', binding)).toThrow(DecryptionError);
      expect(() => crypto.decrypt(`${envelope}.extra`, binding)).toThrow(DecryptionError);
      expect(() => crypto.decrypt(envelope.replace(/^v1/, 'v2'), binding)).toThrow(DecryptionError);
      expect(() => crypto.decrypt('', binding)).toThrow(DecryptionError);
      const pieces = envelope.split('.');
      pieces[2] = Buffer.alloc(0).toString('base64url');
      expect(() => crypto.decrypt(pieces.join('.'), binding)).toThrow(DecryptionError);
    });
  });

  it('rejects a value encrypted under a key it does not have, naming that key id', () => {
    const other = IntegrationCrypto.fromKeyTexts(`other-key:${generateEncryptionKey()}`);
    const envelope = other.encrypt('secret', binding);
    expect(() => crypto.decrypt(envelope, binding)).toThrow(DecryptionError);
    expect(() => crypto.decrypt(envelope, binding)).toThrow(/unknown key "other-key"/);
  });

  it('rejects a value whose key id is known but whose key material differs', () => {
    const impostor = IntegrationCrypto.fromKeyTexts(`key-a:${generateEncryptionKey()}`);
    const envelope = impostor.encrypt('secret', binding);
    expect(() => crypto.decrypt(envelope, binding)).toThrow(DecryptionError);
  });

  it.each([
    ['another row', { ...binding, rowId: 'c3d9a0f2-7c55-4f0e-8a43-2b1f6f1e9d00' }],
    ['another column', { ...binding, column: 'access_token_enc' }],
    ['another table', { ...binding, table: 'webhook_subscriptions' }],
  ])('rejects a value moved to %s (associated data)', (_label, otherBinding) => {
    const envelope = crypto.encrypt('bound value', binding);
    expect(() => crypto.decrypt(envelope, otherBinding)).toThrow(DecryptionError);
    expect(crypto.decrypt(envelope, binding)).toBe('bound value');
  });

  it('does not let the binding fields be shifted into one another', () => {
    const envelope = crypto.encrypt('bound value', { table: 'a', column: 'b', rowId: 'c' });
    expect(() => crypto.decrypt(envelope, { table: 'a', column: 'bc', rowId: '' })).toThrow(DecryptionError);
    expect(() => crypto.decrypt(envelope, { table: 'ab', column: '', rowId: 'c' })).toThrow(DecryptionError);
  });

  describe('key rotation', () => {
    const oldCrypto = IntegrationCrypto.fromKeyTexts(KEY_A);
    const rotated = IntegrationCrypto.fromKeyTexts(KEY_B, [KEY_A]);

    it('reads values written under a previous key', () => {
      const underA = oldCrypto.encrypt('written before rotation', binding);
      expect(rotated.decrypt(underA, binding)).toBe('written before rotation');
    });

    it('writes new values under the active key', () => {
      expect(rotated.activeKeyId).toBe('key-b');
      const underB = rotated.encrypt('written after rotation', binding);
      expect(parts(underB).keyId).toBe('key-b');
      expect(rotated.decrypt(underB, binding)).toBe('written after rotation');
      // The old deployment cannot read it: B is unknown there.
      expect(() => oldCrypto.decrypt(underB, binding)).toThrow(/unknown key "key-b"/);
    });

    it('says which values need re-encryption', () => {
      const underA = oldCrypto.encrypt('old', binding);
      const underB = rotated.encrypt('new', binding);
      expect(rotated.needsReencryption(underA)).toBe(true);
      expect(rotated.needsReencryption(underB)).toBe(false);
      expect(oldCrypto.needsReencryption(underA)).toBe(false);
    });

    it('reads nothing under a key that was dropped from the previous keys', () => {
      const underA = oldCrypto.encrypt('old', binding);
      const withoutA = IntegrationCrypto.fromKeyTexts(KEY_B);
      expect(() => withoutA.decrypt(underA, binding)).toThrow(/unknown key "key-a"/);
    });
  });
});

describe('parseEncryptionKey', () => {
  const material = randomBytes(32);
  const base64 = material.toString('base64');

  it('accepts <keyId>:<base64>', () => {
    const key = parseEncryptionKey(`prod-2024_01:${base64}`);
    expect(key.id).toBe('prod-2024_01');
    expect(Buffer.compare(key.material, material)).toBe(0);
  });

  it('accepts a bare base64 key and derives a stable id from it', () => {
    const first = parseEncryptionKey(base64);
    const second = parseEncryptionKey(base64);
    expect(first.id).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
    expect(first.id).toBe(second.id);
    expect(Buffer.compare(first.material, material)).toBe(0);
    expect(parseEncryptionKey(generateEncryptionKey()).id).not.toBe(first.id);
    // The derived id does not reveal the key.
    expect(base64).not.toContain(first.id.slice(1));
  });

  it('accepts unpadded base64', () => {
    expect(Buffer.compare(parseEncryptionKey(base64.replace(/=$/, '')).material, material)).toBe(0);
  });

  it('round-trips a generated key', () => {
    const crypto = IntegrationCrypto.fromKeyTexts(generateEncryptionKey());
    expect(crypto.decrypt(crypto.encrypt('v', binding), binding)).toBe('v');
  });

  it.each([
    ['16 bytes', randomBytes(16).toString('base64')],
    ['31 bytes', randomBytes(31).toString('base64')],
    ['33 bytes', randomBytes(33).toString('base64')],
    ['64 bytes', randomBytes(64).toString('base64')],
    ['the empty string', ''],
  ])('rejects a key of the wrong length (%s)', (_label, text) => {
    expect(() => parseEncryptionKey(text)).toThrow(KeyFormatError);
    expect(() => parseEncryptionKey(`id:${text}`)).toThrow(KeyFormatError);
  });

  it.each([
    ['illegal characters', `${'!'.repeat(43)}=`],
    ['hex instead of base64', randomBytes(32).toString('hex')],
    ['base64url alphabet', `${'-_'.repeat(21)}A=`],
    ['embedded whitespace', `${base64.slice(0, 20)} ${base64.slice(21)}`],
  ])('rejects a key that is not base64 (%s)', (_label, text) => {
    expect(() => parseEncryptionKey(text)).toThrow(KeyFormatError);
  });

  it.each([
    ['empty', `:${base64}`],
    ['with a space', `my key:${base64}`],
    ['with a dot (the envelope separator)', `v1.key:${base64}`],
    ['too long', `${'k'.repeat(33)}:${base64}`],
  ])('rejects a bad key id (%s)', (_label, text) => {
    expect(() => parseEncryptionKey(text)).toThrow(KeyFormatError);
  });

  it('names the variable in its error, never the key', () => {
    const badKey = randomBytes(16).toString('base64');
    expect(() => parseEncryptionKey(badKey)).toThrow(/^INTEGRATION_ENCRYPTION_KEY: /);
    expect(() => parseEncryptionKey(badKey, 'SOME_OTHER_KEY')).toThrow(/^SOME_OTHER_KEY: /);
    expect(() => IntegrationCrypto.fromKeyTexts(KEY_A, [badKey])).toThrow(/^INTEGRATION_ENCRYPTION_PREVIOUS_KEYS: /);
    try {
      parseEncryptionKey(badKey);
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).not.toContain(badKey);
    }
  });
});
