import { describe, expect, it } from 'vitest';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { ConfigError } from '../../platform/config';
import { DecryptionError, generateEncryptionKey } from '../../platform/integration-crypto';
import { createPayloadCodec, PayloadEncryptionCodec } from '../../platform/payload-codec';

const KEY_OLD = `pl-2024:${generateEncryptionKey()}`;
const KEY_NEW = `pl-2025:${generateEncryptionKey()}`;
const CONNECTION_ID = '7b0c5f1e-4a43-4a39-9d1e-0d4f6f5b2c11';

const text = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? new Uint8Array()).toString('utf8');
const json = (value: unknown): Payload => defaultPayloadConverter.toPayload(value);

describe('PayloadEncryptionCodec', () => {
  const codec = PayloadEncryptionCodec.fromKeyTexts(KEY_OLD);
  const samples: Array<[string, Payload]> = [
    ['a JSON object', json({ connectionId: CONNECTION_ID, status: 'active', expiresAt: 1_700_000_000_000 })],
    ['a string', json('connection:google-calendar:' + CONNECTION_ID)],
    ['null', json(null)],
    ['undefined (binary/null)', json(undefined)],
    ['binary', json(new Uint8Array([0, 1, 2, 255]))],
  ];

  it.each(samples)('round-trips %s, metadata included', async (_label, payload) => {
    const [encrypted] = await codec.encode([payload]);
    const [decoded] = await codec.decode([encrypted!]);
    expect(text(decoded!.data)).toBe(text(payload.data));
    expect(Object.keys(decoded!.metadata ?? {}).sort()).toEqual(Object.keys(payload.metadata ?? {}).sort());
    for (const [key, value] of Object.entries(payload.metadata ?? {})) expect(text(decoded!.metadata![key])).toBe(text(value));
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual(defaultPayloadConverter.fromPayload(payload));
  });

  it('writes binary/encrypted with the key id in the metadata and no plaintext anywhere', async () => {
    const payload = json({ connectionId: CONNECTION_ID, provider: 'google-calendar' });
    const [encrypted] = await codec.encode([payload]);
    expect(Object.keys(encrypted!.metadata!).sort()).toEqual(['encoding', 'encryption-key-id']);
    expect(text(encrypted!.metadata!.encoding)).toBe('binary/encrypted');
    expect(text(encrypted!.metadata!['encryption-key-id'])).toBe('pl-2024');
    const stored = text(encrypted!.data) + Buffer.from(encrypted!.data!).toString('latin1');
    for (const plain of [CONNECTION_ID, 'connectionId', 'google-calendar', 'json/plain']) expect(stored).not.toContain(plain);
    expect(() => JSON.parse(text(encrypted!.data))).toThrow();
    // iv (12) + serialized payload + tag (16)
    expect(encrypted!.data!.length).toBeGreaterThan(12 + 16);
  });

  it('uses a fresh IV per payload, so equal payloads encrypt differently', async () => {
    const payload = json({ connectionId: CONNECTION_ID });
    const [first, second] = await codec.encode([payload, payload]);
    expect(Buffer.from(first!.data!).equals(Buffer.from(second!.data!))).toBe(false);
    expect(Buffer.from(first!.data!).subarray(0, 12).equals(Buffer.from(second!.data!).subarray(0, 12))).toBe(false);
  });

  it('passes through payloads that were never encrypted (histories from before the codec)', async () => {
    const plain = [json({ connectionId: CONNECTION_ID }), json('text'), json(undefined)];
    const decoded = await codec.decode(plain);
    expect(decoded).toEqual(plain);
  });

  it('refuses a payload encrypted under a key it does not have', async () => {
    const [encrypted] = await PayloadEncryptionCodec.fromKeyTexts(KEY_NEW).encode([json({ connectionId: CONNECTION_ID })]);
    await expect(codec.decode([encrypted!])).rejects.toThrow(DecryptionError);
    await expect(codec.decode([encrypted!])).rejects.toThrow(/unknown key "pl-2025"/);
  });

  it('refuses a payload whose key id names a different key, or whose bytes were altered', async () => {
    const impostor = PayloadEncryptionCodec.fromKeyTexts(`pl-2024:${generateEncryptionKey()}`);
    const [encrypted] = await impostor.encode([json({ connectionId: CONNECTION_ID })]);
    await expect(codec.decode([encrypted!])).rejects.toThrow(DecryptionError);

    const [genuine] = await codec.encode([json({ connectionId: CONNECTION_ID })]);
    const altered = Buffer.from(genuine!.data!);
    altered[20] = altered[20]! ^ 0x01;
    await expect(codec.decode([{ ...genuine!, data: altered }])).rejects.toThrow(/altered/);
    await expect(codec.decode([{ ...genuine!, data: altered.subarray(0, 20) }])).rejects.toThrow(/truncated/);
    await expect(codec.decode([{ metadata: { encoding: genuine!.metadata!.encoding! }, data: genuine!.data! }])).rejects.toThrow(/encryption-key-id/);
  });

  it('rotates: the new key writes, payloads under the previous key stay readable', async () => {
    const before = await codec.encode([json({ connectionId: CONNECTION_ID, written: 'before' })]);
    const rotated = PayloadEncryptionCodec.fromKeyTexts(KEY_NEW, [KEY_OLD]);
    expect(rotated.activeKeyId).toBe('pl-2025');
    const after = await rotated.encode([json({ connectionId: CONNECTION_ID, written: 'after' })]);
    expect(text(after[0]!.metadata!['encryption-key-id'])).toBe('pl-2025');
    const decoded = await rotated.decode([...before, ...after]);
    expect(decoded.map((payload) => defaultPayloadConverter.fromPayload(payload))).toEqual([
      { connectionId: CONNECTION_ID, written: 'before' },
      { connectionId: CONNECTION_ID, written: 'after' },
    ]);
    // The old codec cannot read what the new key wrote.
    await expect(codec.decode(after)).rejects.toThrow(DecryptionError);
  });

  it('derives the same id for the same bare key, as IntegrationCrypto does', () => {
    const bare = generateEncryptionKey();
    expect(PayloadEncryptionCodec.fromKeyTexts(bare).activeKeyId).toBe(PayloadEncryptionCodec.fromKeyTexts(bare).activeKeyId);
    expect(PayloadEncryptionCodec.fromKeyTexts(bare).activeKeyId).toMatch(/^k[0-9a-f]{12}$/);
  });
});

describe('createPayloadCodec', () => {
  it('stops with a ConfigError naming TEMPORAL_PAYLOAD_KEY when it is missing or malformed', () => {
    expect(() => createPayloadCodec({ activeKey: undefined, previousKeys: [] })).toThrow(ConfigError);
    expect(() => createPayloadCodec({ activeKey: undefined, previousKeys: [] })).toThrow(/TEMPORAL_PAYLOAD_KEY/);
    expect(() => createPayloadCodec({ activeKey: 'not-a-key', previousKeys: [] })).toThrow(/TEMPORAL_PAYLOAD_KEY/);
    expect(() => createPayloadCodec({ activeKey: KEY_NEW, previousKeys: ['old:short'] })).toThrow(/TEMPORAL_PAYLOAD_PREVIOUS_KEYS/);
  });

  it('builds the codec from valid keys', () => {
    expect(createPayloadCodec({ activeKey: KEY_NEW, previousKeys: [KEY_OLD] }).activeKeyId).toBe('pl-2025');
  });
});
