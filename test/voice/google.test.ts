import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTemporalDevServer } from '../helpers/temporal';
import { auditRows, fulfill, linkAccount, linkedDevice, seedStay, startVoiceTestPlatform, stoppedServerClock, type LinkedAccount, type VoiceTestPlatform } from '../helpers/voice';
import { dayOf } from '../helpers/voice-devices';

/**
 * Google Home cloud-to-cloud fulfillment through our real endpoints: an account linked as Google
 * links it, then SYNC, QUERY and EXECUTE answered from the user's properties and reservations.
 */
describe('Google Home fulfillment', () => {
  let temporal: TestWorkflowEnvironment;
  let voice: VoiceTestPlatform;
  let account: LinkedAccount;
  let deviceId: string;
  const properties: Record<string, string> = {};
  // The api-server's clock, from which the tests say which day it is, as QUERY does.
  const { now: serverNow, clock: serverClock } = stoppedServerClock();

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    voice = await startVoiceTestPlatform(temporal, {}, { serverClock });
    account = await linkAccount(voice, voice.googleClient);
    deviceId = (await linkedDevice(voice.platform, account.userId)).id;
    const { platform } = voice;
    properties.occupied = await seedStay(platform, account.userId, { property: 'Lake cabin', guest: 'Ann', checkIn: dayOf(serverNow.getTime(), -1), checkOut: dayOf(serverNow.getTime(), 2) });
    properties.arriving = await seedStay(platform, account.userId, { property: 'Sea view', guest: 'Bea', checkIn: dayOf(serverNow.getTime(), 0), checkOut: dayOf(serverNow.getTime(), 1) });
    properties.leaving = await seedStay(platform, account.userId, { property: 'Hill hut', guest: 'Cy', checkIn: dayOf(serverNow.getTime(), -3), checkOut: dayOf(serverNow.getTime(), 0) });
    properties.cancelled = await seedStay(platform, account.userId, { property: 'Old mill', guest: 'Di', checkIn: dayOf(serverNow.getTime(), -1), checkOut: dayOf(serverNow.getTime(), 1), status: 'cancelled' });
  });

  afterAll(async () => {
    await voice?.close();
    await temporal?.teardown();
  });

  it('links as Google does (client credentials in the body), with the state returned unchanged', () => {
    expect(account.returnedState).toBe(account.sentState);
    expect(deviceId).toEqual(expect.any(String));
  });

  it("SYNC: the agent user is the device, and each of the user's properties an occupancy sensor", async () => {
    const answer = await fulfill(voice.platform, account.accessToken, [{ intent: 'action.devices.SYNC' }]);
    expect(answer.status).toBe(200);
    const payload = answer.body.payload as { agentUserId: string; devices: Array<Record<string, unknown>> };
    expect(answer.body.requestId).toEqual(expect.any(String));
    expect(payload.agentUserId).toBe(deviceId);
    expect(payload.devices.map((device) => device.name)).toEqual([{ name: 'Lake cabin' }, { name: 'Sea view' }, { name: 'Hill hut' }, { name: 'Old mill' }]);
    expect(payload.devices[0]).toEqual({
      id: properties.occupied,
      type: 'action.devices.types.SENSOR',
      traits: ['action.devices.traits.OccupancySensing'],
      name: { name: 'Lake cabin' },
      willReportState: true,
      attributes: {
        occupancySensorConfiguration: [
          { occupancySensorType: 'PIR', occupiedToUnoccupiedDelaySec: expect.any(Number), unoccupiedToOccupiedDelaySec: expect.any(Number), unoccupiedToOccupiedEventThreshold: expect.any(Number) },
        ],
      },
    });

    // A user without properties has no devices.
    const other = await linkAccount(voice, voice.googleClient);
    const empty = await fulfill(voice.platform, other.accessToken, [{ intent: 'action.devices.SYNC' }]);
    expect((empty.body.payload as { devices: unknown[] }).devices).toEqual([]);
  });

  it('QUERY: occupied when a confirmed stay covers tonight; devices that are not the user\'s are not found', async () => {
    const answer = await fulfill(voice.platform, account.accessToken, [
      { intent: 'action.devices.QUERY', payload: { devices: [...Object.values(properties), randomUUID()].map((id) => ({ id })) } },
    ]);
    expect(answer.status).toBe(200);
    const devices = (answer.body.payload as { devices: Record<string, unknown> }).devices;
    expect(devices[properties.occupied!]).toEqual({ online: true, status: 'SUCCESS', occupancy: 'OCCUPIED' });
    expect(devices[properties.arriving!]).toEqual({ online: true, status: 'SUCCESS', occupancy: 'OCCUPIED' });
    expect(devices[properties.leaving!]).toEqual({ online: true, status: 'SUCCESS', occupancy: 'UNOCCUPIED' });
    expect(devices[properties.cancelled!]).toEqual({ online: true, status: 'SUCCESS', occupancy: 'UNOCCUPIED' });
    expect(Object.values(devices).filter((device) => (device as { errorCode?: string }).errorCode === 'deviceNotFound')).toHaveLength(1);
  });

  it('EXECUTE: sensors have nothing to run, every command is functionNotSupported', async () => {
    const answer = await fulfill(voice.platform, account.accessToken, [
      {
        intent: 'action.devices.EXECUTE',
        payload: { commands: [{ devices: [{ id: properties.occupied }, { id: properties.arriving }], execution: [{ command: 'action.devices.commands.OnOff', params: { on: true } }] }] },
      },
    ]);
    expect(answer.status).toBe(200);
    expect(answer.body.payload).toEqual({ commands: [{ ids: [properties.occupied, properties.arriving], status: 'ERROR', errorCode: 'functionNotSupported' }] });
    const commands = (await auditRows(voice.platform, 'VoiceCommand')).filter((row) => row.user_id === account.userId);
    expect(commands.map((row) => (row.details as { command: string }).command)).toEqual(expect.arrayContaining(['action.devices.SYNC', 'action.devices.QUERY', 'action.devices.EXECUTE']));
  });

  it('401 for a missing, foreign, refresh or Alexa token (Google unlinks on it); an unknown intent is an error of the request in Google\'s shape; 400 for a malformed request', async () => {
    const { platform } = voice;
    const sync = [{ intent: 'action.devices.SYNC' }];
    for (const token of [undefined, 'not-a-token', account.refreshToken]) {
      const answer = await fulfill(platform, token, sync);
      expect(answer.status).toBe(401);
      expect(answer.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect(answer.body).toEqual({ error: 'invalid_token', message: expect.any(String) });
    }
    const alexa = await linkAccount(voice, voice.alexaClient);
    expect((await fulfill(platform, alexa.accessToken, sync)).status).toBe(401);

    const unknown = await fulfill(platform, account.accessToken, [{ intent: 'action.devices.IDENTIFY' }]);
    expect(unknown.status).toBe(200);
    expect(unknown.body).toEqual({ requestId: expect.any(String), payload: { errorCode: 'notSupported', debugString: expect.stringContaining('action.devices.IDENTIFY') } });
    const malformed = await fulfill(platform, account.accessToken, []);
    expect(malformed.status).toBe(400);
  });

  it('authFailure, an error of the request in Google\'s shape, when the link was not granted what the intent reads', async () => {
    const narrow = await linkAccount(voice, voice.googleClient, 'devices:control');
    const answer = await fulfill(voice.platform, narrow.accessToken, [{ intent: 'action.devices.SYNC' }]);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ requestId: expect.any(String), payload: { errorCode: 'authFailure', debugString: expect.stringContaining('properties:read') } });
  });
});
