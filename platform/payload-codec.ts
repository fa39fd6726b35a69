import type { Payload, PayloadCodec } from '@temporalio/common';
// CommonJS: Node's ESM loader cannot see its named exports, so the default export is destructured.
import proto from '@temporalio/proto';
import { ConfigError } from './config';
import {
  AES_GCM_IV_BYTES,
  AES_GCM_TAG_BYTES,
  DecryptionError,
  KeyFormatError,
  KeyRing,
  openAesGcm,
  parseEncryptionKey,
  sealAesGcm,
  type EncryptionKey,
} from './integration-crypto';

/**
 * Encrypts every Temporal payload (inputs, results, signals, updates, queries, memos, failures' details)
 * with AES-256-GCM before it leaves the process, so Temporal's database holds no readable payload
 * (design invariant 1, second layer). Key handling is IntegrationCrypto's: `<keyId>:<base64>` keys,
 * the key id travels in the payload metadata, previous keys stay readable, the active key writes.
 *
 * An encrypted payload: metadata `encoding: binary/encrypted`, `encryption-key-id: <id>`; data
 * `iv (12 bytes) || ciphertext || tag (16 bytes)` of the serialized original `temporal.api.common.v1.Payload`.
 * Payloads without `encoding: binary/encrypted` pass through decode() unchanged, so histories written
 * before the codec stay readable.
 */

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
// Domain separation: a payload ciphertext can never be mistaken for an IntegrationCrypto value.
const ASSOCIATED_DATA = Buffer.from('temporal.api.common.v1.Payload', 'utf8');

const { Payload: PayloadMessage } = proto.temporal.api.common.v1;
const utf8 = (text: string) => new TextEncoder().encode(text);
const text = (bytes: Uint8Array | null | undefined) => (bytes ? Buffer.from(bytes).toString('utf8') : undefined);

export class PayloadEncryptionCodec implements PayloadCodec {
  private readonly ring: KeyRing;

  constructor(active: EncryptionKey, readable: EncryptionKey[] = []) {
    this.ring = new KeyRing(active, readable);
  }

  /** Throws KeyFormatError naming TEMPORAL_PAYLOAD_KEY / TEMPORAL_PAYLOAD_PREVIOUS_KEYS. */
  static fromKeyTexts(activeKey: string, previousKeys: string[] = []): PayloadEncryptionCodec {
    return new PayloadEncryptionCodec(
      parseEncryptionKey(activeKey, 'TEMPORAL_PAYLOAD_KEY'),
      previousKeys.map((key) => parseEncryptionKey(key, 'TEMPORAL_PAYLOAD_PREVIOUS_KEYS')),
    );
  }

  get activeKeyId(): string {
    return this.ring.active.id;
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      const serialized = PayloadMessage.encode(payload).finish();
      const { iv, ciphertext, tag } = sealAesGcm(this.ring.active.material, serialized, ASSOCIATED_DATA);
      return {
        metadata: { encoding: utf8(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: utf8(this.ring.active.id) },
        data: Buffer.concat([iv, ciphertext, tag]),
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      if (text(payload.metadata?.encoding) !== ENCRYPTED_ENCODING) return payload;
      const keyId = text(payload.metadata?.[KEY_ID_METADATA]);
      if (!keyId) throw new DecryptionError(`encrypted payload without ${KEY_ID_METADATA}`);
      const key = this.ring.readable(keyId);
      if (!key) throw new DecryptionError(`payload encrypted with unknown key "${keyId}"`);
      const data = Buffer.from(payload.data ?? new Uint8Array());
      if (data.length < AES_GCM_IV_BYTES + AES_GCM_TAG_BYTES) throw new DecryptionError('encrypted payload is truncated');
      let plaintext: Buffer;
      try {
        plaintext = openAesGcm(
          key,
          {
            iv: data.subarray(0, AES_GCM_IV_BYTES),
            ciphertext: data.subarray(AES_GCM_IV_BYTES, data.length - AES_GCM_TAG_BYTES),
            tag: data.subarray(data.length - AES_GCM_TAG_BYTES),
          },
          ASSOCIATED_DATA,
        );
      } catch {
        throw new DecryptionError(`payload encrypted with key "${keyId}" was altered or does not match that key`);
      }
      return PayloadMessage.decode(plaintext);
    });
  }
}

/** The codec from TEMPORAL_PAYLOAD_KEY / TEMPORAL_PAYLOAD_PREVIOUS_KEYS; a bad or missing key is a ConfigError. */
export function createPayloadCodec(settings: { activeKey: string | undefined; previousKeys: string[] }): PayloadEncryptionCodec {
  if (!settings.activeKey) throw new ConfigError(['TEMPORAL_PAYLOAD_KEY: is required']);
  try {
    return PayloadEncryptionCodec.fromKeyTexts(settings.activeKey, settings.previousKeys);
  } catch (error) {
    if (error instanceof KeyFormatError) throw new ConfigError([error.message]);
    throw error;
  }
}
