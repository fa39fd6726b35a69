import { Client, Connection, defaultPayloadConverter, type WorkflowClientInterceptor } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApiServer } from '../../api/app';
import { ensureVoiceDeviceWorkflow } from '../../api/voice-device-workflow';
import { findVoiceDevice } from '../../db/queries/voice-devices';
import type { VoiceDeviceWorkflowInput } from '../../workflows/voice-device-messages';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { freePort } from '../helpers/ports';
import { startTemporalDevServer } from '../helpers/temporal';
import { exchangeCode, grantOfRefreshToken, issueCode, refresh, type TestClient, type Tokens } from '../oauth/token-helpers';

/**
 * A voice client's first code exchange starts its device's workflow (`voice-device:<platform>:<deviceId>`)
 * on a real Temporal server; when Temporal cannot be reached the tokens are answered all the same, and
 * the next refresh of the device's tokens starts it. No worker runs here: a started workflow just waits.
 */
describe('the device workflow of a voice link', () => {
  let temporal: TestWorkflowEnvironment;
  let server: OAuthTestServer;
  let withTemporal: OAuthTestServer;
  let alexa: TestClient;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    // The OAuth test server's own Temporal connection points at a closed port; this one reaches the dev server.
    server = await startOAuthTestServer();
    const port = await freePort();
    const app = await buildApiServer({ ...server.app.services, temporal: new Client({ connection: temporal.connection }) });
    await app.listen({ host: '127.0.0.1', port });
    withTemporal = { ...server, app, url: `http://127.0.0.1:${port}` };
    alexa = await server.createClient({
      name: 'Alexa skill',
      redirectUris: ['https://pitangui.amazon.com/api/skill/link/M2AAAAAAAAAAAA'],
      scopes: ['properties:read', 'reservations:read'],
      kind: 'voice',
      voicePlatform: 'alexa',
    });
  });

  afterAll(async () => {
    await withTemporal?.app.close();
    await server?.close();
    await temporal?.teardown();
  });

  async function linkThrough(target: OAuthTestServer): Promise<{ tokens: Tokens; deviceId: string }> {
    const user = await server.createUser(`workflow-${Math.random()}@example.com`);
    const response = await exchangeCode(target, alexa, await issueCode(server, alexa, user.id, ['properties:read']));
    expect(response.status, response.text).toBe(200);
    const tokens = response.body as unknown as Tokens;
    const deviceId = await server.db.oneFirst(sql.type(z.object({ id: z.string() }))`
      SELECT id FROM voice_devices WHERE grant_id = ${await grantOfRefreshToken(server, tokens.refresh_token)}`);
    return { tokens, deviceId };
  }

  async function startedInput(deviceId: string): Promise<VoiceDeviceWorkflowInput> {
    const handle = temporal.client.workflow.getHandle(`voice-device:alexa:${deviceId}`);
    const description = await handle.describe();
    expect(description).toMatchObject({ type: 'voiceDeviceWorkflow', taskQueue: server.config.temporal.taskQueue, status: { name: 'RUNNING' } });
    const history = await handle.fetchHistory();
    const [payload] = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads!;
    const input = defaultPayloadConverter.fromPayload<VoiceDeviceWorkflowInput>(payload!);
    return input;
  }

  it('starts on the first code exchange, with ids and the refresh policy only, and records the start', async () => {
    const { deviceId } = await linkThrough(withTemporal);
    expect(await startedInput(deviceId)).toEqual({
      deviceId,
      platform: 'alexa',
      refreshPolicy: { marginSeconds: server.config.tokenRefresh.marginSeconds, jitterSeconds: server.config.tokenRefresh.jitterSeconds },
    });
    expect((await findVoiceDevice(server.db, deviceId))?.workflowStartedAt).toEqual(expect.any(Number));
  });

  it('answers the tokens when Temporal is unreachable, and the next refresh starts the workflow', async () => {
    const { tokens, deviceId } = await linkThrough(server);
    expect((await findVoiceDevice(server.db, deviceId))?.workflowStartedAt).toBeNull();

    const refreshed = await refresh(withTemporal, alexa, tokens.refresh_token);
    expect(refreshed.status, refreshed.text).toBe(200);
    // The refresh answers without waiting for the start; the start is recorded once it succeeded.
    await expect.poll(async () => (await findVoiceDevice(server.db, deviceId))?.workflowStartedAt, { timeout: 15_000 }).toEqual(expect.any(Number));
    expect((await startedInput(deviceId)).deviceId).toBe(deviceId);
  });

  it('closing the api-server waits for the start a refresh set off, so no retry outlives the Temporal connection', async () => {
    // Temporal unreachable: the client retries the start on a timer until its deadline.
    const unreachable = Connection.lazy({ address: '127.0.0.1:1' });
    const starts = { begun: 0, settled: 0 };
    const counting: WorkflowClientInterceptor = {
      async start(input, next) {
        starts.begun += 1;
        try {
          return await next(input);
        } finally {
          starts.settled += 1;
        }
      },
    };
    const port = await freePort();
    const app = await buildApiServer({ ...server.app.services, temporal: new Client({ connection: unreachable, interceptors: { workflow: [counting] } }) });
    await app.listen({ host: '127.0.0.1', port });
    try {
      const { tokens, deviceId } = await linkThrough(server);
      const refreshed = await refresh({ ...server, app, url: `http://127.0.0.1:${port}` }, alexa, tokens.refresh_token);
      expect(refreshed.status, refreshed.text).toBe(200);
      await app.close();
      expect(starts).toEqual({ begun: 1, settled: 1 });
      expect((await findVoiceDevice(server.db, deviceId))?.workflowStartedAt).toBeNull();
    } finally {
      await app.close();
      await unreachable.close();
    }
  });

  it('a workflow that is already running counts as started', async () => {
    const { deviceId } = await linkThrough(withTemporal);
    await server.db.query(sql.unsafe`UPDATE voice_devices SET workflow_started_at = NULL WHERE id = ${deviceId}`);
    const device = (await findVoiceDevice(server.db, deviceId))!;
    expect(await ensureVoiceDeviceWorkflow(withTemporal.app.services, device, withTemporal.app.log)).toBe(true);
    expect((await findVoiceDevice(server.db, deviceId))?.workflowStartedAt).toEqual(expect.any(Number));
  });
});
