import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApiServer } from '../../api/app';
import { createLogger } from '../../platform/logger';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';

/** Every JSON line written to it, parsed. */
function logCapture() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, destination, text: () => JSON.stringify(lines) };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('structured logs', () => {
  let server: OAuthTestServer;
  let app: FastifyInstance;
  const log = logCapture();

  beforeAll(async () => {
    server = await startOAuthTestServer();
    app = await buildApiServer({ ...server.app.services, config: { ...server.config, logLevel: 'info' } }, { logDestination: log.destination });
  });

  afterAll(async () => {
    await app?.close();
    await server?.close();
  });

  it('gives every request an id, on each of its log lines and in the response', async () => {
    const response = await app.inject({ url: '/api/v1/auth/me' });
    const requestId = response.headers['x-request-id'];
    expect(requestId).toMatch(UUID);
    const lines = log.lines.filter((line) => line.requestId === requestId);
    expect(lines.map((line) => line.msg)).toEqual(['incoming request', 'request completed']);
    expect(lines[1]).toMatchObject({ res: { statusCode: 401 } });
  });

  it("keeps a caller's safe x-request-id and replaces an unsafe one", async () => {
    const kept = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'lb-7f3a.42:1' } });
    expect(kept.headers['x-request-id']).toBe('lb-7f3a.42:1');
    expect(log.lines.filter((line) => line.requestId === 'lb-7f3a.42:1')).toHaveLength(2);

    for (const unsafe of ['{"forged":"field"}', 'has spaces', 'x'.repeat(65)]) {
      const replaced = await app.inject({ url: '/healthz', headers: { 'x-request-id': unsafe } });
      expect(replaced.headers['x-request-id']).toMatch(UUID);
      expect(log.text()).not.toContain(unsafe);
    }
  });

  it('logs neither query strings nor credential headers', async () => {
    await app.inject({
      url: '/api/v1/integrations/google-calendar/callback?code=4/secret-authorization-code&state=secret-state-value',
      headers: { authorization: 'Bearer secret-session-token', cookie: 'pm_session=secret-cookie' },
    });
    const text = log.text();
    expect(text).toContain('/api/v1/integrations/google-calendar/callback');
    for (const secret of ['secret-authorization-code', 'secret-state-value', 'secret-session-token', 'secret-cookie']) expect(text).not.toContain(secret);
  });

  it('redacts credential fields wherever a log call puts them', () => {
    const capture = logCapture();
    const logger = createLogger({ logLevel: 'info' }, capture.destination);
    const secrets = {
      token: 'secret-1',
      taskToken: 'secret-2',
      client_secret: 'secret-3',
      provider: { access_token: 'secret-4', refresh_token: 'secret-5', id_token: 'secret-6', code: 'secret-7', code_verifier: 'secret-8' },
      booking: { machineCredentials: 'secret-9', password: 'secret-10' },
      webhook: { webhookSecret: 'secret-11', secret: 'secret-12' },
      request: { query: 'code=secret-13', clientSecret: 'secret-14', token: 'secret-15' },
    };
    logger.info({ ...secrets, workflowId: 'connection:google-calendar:1' }, 'something happened');
    const [line] = capture.lines;
    expect(line).toMatchObject({ msg: 'something happened', workflowId: 'connection:google-calendar:1', token: '[redacted]', provider: { access_token: '[redacted]' } });
    for (let n = 1; n <= 15; n++) expect(capture.text()).not.toContain(`"secret-${n}"`);
  });
});
