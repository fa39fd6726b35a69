import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTemporalDevServer } from '../helpers/temporal';
import { auditRows, fulfill, linkAccount, sendSkillRequest, startVoiceTestPlatform, type JsonAnswer, type LinkedAccount, type VoiceTestPlatform } from '../helpers/voice';

const PER_DEVICE = 5;
const PER_USER = 8;

/**
 * Voice commands are limited per device and per user, never per address: Alexa and Google call from
 * a few shared addresses for all of their users (here every caller is 127.0.0.1). Over a limit, 429
 * with Retry-After; the first refusal in a window is audited, not each.
 */
describe('voice command limits', () => {
  let temporal: TestWorkflowEnvironment;
  let voice: VoiceTestPlatform;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    voice = await startVoiceTestPlatform(temporal, {
      VOICE_COMMANDS_PER_MINUTE_PER_DEVICE: String(PER_DEVICE),
      VOICE_COMMANDS_PER_MINUTE_PER_USER: String(PER_USER),
    });
  });

  afterAll(async () => {
    await voice?.close();
    await temporal?.teardown();
  });

  const expectRetryAfter = (answer: JsonAnswer) => {
    expect(Number(answer.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(answer.headers.get('retry-after'))).toBeLessThanOrEqual(60);
  };

  const expectRateLimited = (answer: JsonAnswer) => {
    expect(answer.status).toBe(429);
    expectRetryAfter(answer);
    expect(answer.body).toEqual({ error: 'rate_limited', message: expect.any(String) });
  };

  const refusalAudits = async (userId: string) =>
    (await auditRows(voice.platform, 'VoiceCommandRateLimited')).filter((row) => row.user_id === userId).map((row) => (row.details as { limit: string }).limit);

  it('a burst above the device limit gets 429 with Retry-After for the excess, the rest succeed; then the user limit holds across devices', async () => {
    const { platform } = voice;
    // Every account is linked before the first counted command: the commands below take a moment, well inside one limit window.
    const alexa = await linkAccount(voice, voice.alexaClient);
    const google = await linkAccount(voice, voice.googleClient, undefined, alexa);
    const neighbour = await linkAccount(voice, voice.alexaClient);
    const launch = (account: LinkedAccount) => sendSkillRequest(voice, { type: 'LaunchRequest', accessToken: account.accessToken });
    const sync = () => fulfill(platform, google.accessToken, [{ intent: 'action.devices.SYNC' }]);

    const burst = await Promise.all(Array.from({ length: PER_DEVICE + 3 }, () => launch(alexa)));
    expect(burst.filter((answer) => answer.status === 200)).toHaveLength(PER_DEVICE);
    for (const refused of burst.filter((answer) => answer.status !== 200)) expectRateLimited(refused);
    expect(await refusalAudits(alexa.userId)).toEqual(['device']);

    // Another user of the same platform, from the same address, is not held back.
    expect((await launch(neighbour)).status).toBe(200);

    // The same user's Google device has its own device budget but shares the user's; Google is told in its own shape.
    for (let command = PER_DEVICE; command < PER_USER; command++) expect((await sync()).body.payload).toMatchObject({ devices: [] });
    const overUser = await sync();
    expect(overUser.status).toBe(200);
    expect(overUser.body).toEqual({ requestId: expect.any(String), payload: { errorCode: 'transientError', debugString: expect.stringContaining('user') } });
    expectRetryAfter(overUser);
    expect(await refusalAudits(alexa.userId)).toEqual(['device', 'user']);
    expect(JSON.stringify(await auditRows(platform, 'VoiceCommandRateLimited'))).not.toContain(google.accessToken);

    // An unlink is never refused for being one command too many.
    const disconnect = await fulfill(platform, google.accessToken, [{ intent: 'action.devices.DISCONNECT' }]);
    expect(disconnect.status).toBe(200);
    expect(disconnect.body).toEqual({});
  });
});
