import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import { buildCodecServer } from '../../api/codec-server';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { randomToken } from '../../platform/secrets';
import { connectGoogleCalendar, GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { historyPayloads } from '../helpers/payload-history';
import { freePort } from '../helpers/ports';

/**
 * Design invariant 1, second layer: what Temporal stores is encrypted by the payload codec, and the
 * codec server lets an operator with the credential (and only them) read it, from Temporal Web's origin.
 */
describe('payload encryption (dev server) and the codec server', () => {
  const TEMPORAL_WEB = 'http://localhost:8233';
  const token = randomToken();
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  let codecServer: FastifyInstance;
  let codecUrl: string;
  let connectionId: string;
  let workflowId: string;
  let rawPayloads: Array<{ metadata: Record<string, string>; data: string }>;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, google });
    codecServer = await buildCodecServer({ codec: platform.payloadCodec, token, corsOrigin: TEMPORAL_WEB, logLevel: 'silent' });
    const port = await freePort();
    await codecServer.listen({ host: '127.0.0.1', port });
    codecUrl = `http://127.0.0.1:${port}`;

    const { sessionToken } = await platform.signUp('erin@example.com');
    const connected = await connectGoogleCalendar(platform, sessionToken);
    expect(connected.status).toBe(202);
    ({ connectionId, workflowId } = connected.body as { connectionId: string; workflowId: string });
    await waitForConnectionState(platform, workflowId, (state) => state.status === 'active');
  });

  afterAll(async () => {
    await codecServer?.close();
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  const post = (path: string, body: unknown, headers: Record<string, string> = { authorization: `Bearer ${token}` }) =>
    fetch(`${codecUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-namespace': 'default', origin: TEMPORAL_WEB, ...headers },
      body: JSON.stringify(body),
    });

  it('stores only encrypted payloads: the raw history (client without the codec) shows no JSON', async () => {
    // temporal.client has no codec: it sees exactly what Temporal stores.
    const history = await temporal.client.workflow.getHandle(workflowId).fetchHistory();
    const payloads = historyPayloads(history);
    expect(payloads.length).toBeGreaterThan(3); // input, activity inputs and results, ...
    for (const payload of payloads) {
      expect(Buffer.from(payload.metadata!.encoding!).toString()).toBe('binary/encrypted');
      expect(Buffer.from(payload.metadata!['encryption-key-id']!).toString()).toBe(platform.payloadCodec.activeKeyId);
      const data = Buffer.from(payload.data ?? new Uint8Array());
      expect(() => JSON.parse(data.toString('utf8'))).toThrow();
      for (const plain of [connectionId, 'connectionId', 'json/plain']) expect(data.toString('latin1')).not.toContain(plain);
    }
    // The codec-aware client still reads the workflow's state.
    expect((await waitForConnectionState(platform, workflowId, () => true)).status).toBe('active');

    rawPayloads = payloads.map((payload) => ({
      metadata: Object.fromEntries(Object.entries(payload.metadata!).map(([key, value]) => [key, Buffer.from(value).toString('base64')])),
      data: Buffer.from(payload.data ?? new Uint8Array()).toString('base64'),
    }));
  });

  it('decodes them for an operator with the credential', async () => {
    const response = await post('/decode', { payloads: rawPayloads });
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBe(TEMPORAL_WEB);
    const { payloads } = (await response.json()) as { payloads: Array<{ metadata: Record<string, string>; data: string }> };
    expect(payloads).toHaveLength(rawPayloads.length);
    const encodings = payloads.map((payload) => Buffer.from(payload.metadata.encoding ?? '', 'base64').toString());
    expect(encodings).not.toContain('binary/encrypted');
    const texts = payloads.filter((_, index) => encodings[index] === 'json/plain').map((payload) => Buffer.from(payload.data, 'base64').toString());
    expect(texts.length).toBeGreaterThan(0);
    for (const text of texts) expect(() => JSON.parse(text)).not.toThrow();
    expect(texts.join('\n')).toContain(`"connectionId":"${connectionId}"`);
  });

  it('refuses without the credential, or with a wrong one', async () => {
    const without = await post('/decode', { payloads: rawPayloads }, { authorization: '' });
    expect(without.status).toBe(401);
    expect(await without.json()).toMatchObject({ error: 'unauthorized' });
    // The UI can read why: the refusal carries the CORS headers too.
    expect(without.headers.get('access-control-allow-origin')).toBe(TEMPORAL_WEB);
    const wrong = await post('/decode', { payloads: rawPayloads }, { authorization: `Bearer ${randomToken()}` });
    expect(wrong.status).toBe(401);
    const notBearer = await post('/decode', { payloads: rawPayloads }, { authorization: `Basic ${Buffer.from(`op:${token}`).toString('base64')}` });
    expect(notBearer.status).toBe(401);
    const encodeWithout = await post('/encode', { payloads: [] }, { authorization: '' });
    expect(encodeWithout.status).toBe(401);
  });

  it('answers the CORS preflight from Temporal Web, and only from there', async () => {
    const preflight = await fetch(`${codecUrl}/decode`, {
      method: 'OPTIONS',
      headers: { origin: TEMPORAL_WEB, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-namespace,authorization' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(TEMPORAL_WEB);
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
    const allowed = preflight.headers.get('access-control-allow-headers')!.split(',').map((header) => header.trim());
    expect(allowed).toEqual(expect.arrayContaining(['content-type', 'x-namespace', 'authorization']));

    const elsewhere = await fetch(`${codecUrl}/decode`, {
      method: 'OPTIONS',
      headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(elsewhere.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('encodes, and what it encodes decodes back', async () => {
    const original = {
      metadata: { encoding: Buffer.from('json/plain').toString('base64') },
      data: Buffer.from(JSON.stringify({ connectionId, note: 'written by an operator' })).toString('base64'),
    };
    const encoded = await post('/encode', { payloads: [original] });
    expect(encoded.status).toBe(200);
    const { payloads: [sealed] } = (await encoded.json()) as { payloads: Array<{ metadata: Record<string, string>; data: string }> };
    expect(Buffer.from(sealed!.metadata.encoding!, 'base64').toString()).toBe('binary/encrypted');
    expect(Buffer.from(sealed!.data, 'base64').toString('latin1')).not.toContain(connectionId);

    const decoded = await post('/decode', { payloads: [sealed] });
    expect(await decoded.json()).toEqual({ payloads: [original] });
  });

  it('rejects malformed bodies with the JSON error shape, and undecryptable payloads with 422', async () => {
    const malformed = await post('/decode', { nope: [] });
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ error: 'invalid_request' });
    const tampered = { ...rawPayloads[0]!, data: Buffer.alloc(64, 1).toString('base64') };
    const undecryptable = await post('/decode', { payloads: [tampered] });
    expect(undecryptable.status).toBe(422);
    expect(await undecryptable.json()).toMatchObject({ error: 'decode_failed' });
  });
});
