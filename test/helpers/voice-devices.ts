import { Client, type WorkflowHandle } from '@temporalio/client';
import { acceptAlexaGrant } from '../../api/plugins/voice/accept-grant';
import { findVoiceDevice } from '../../db/queries/voice-devices';
import type { FakeAlexaRegion } from '../../fakes/amazon';
import type { voiceDeviceWorkflow } from '../../workflows/voice-device';
import { voiceDeviceStatusQuery, type VoiceDeviceState } from '../../workflows/voice-device-messages';
import { introspect, linkAccount, linkedDevice, postAsVoiceClient, waitFor, type LinkedAccount, type VoiceClient, type VoiceTestPlatform } from './voice';

/** A linked voice device as its workflow's tests see it, on top of test/helpers/voice.ts. */
export interface LinkedDevice {
  deviceId: string;
  userId: string;
  client: VoiceClient;
  handle: WorkflowHandle<typeof voiceDeviceWorkflow>;
  /** What the platform holds now: our newest tokens. */
  tokens: { accessToken: string; refreshToken: string };
  /** Every token of ours the platform was given (all must introspect inactive after an unlink). */
  issued: string[];
  /** Every secret the link handled, for scans of the workflow's history. */
  secrets: string[];
}

/** Account linking through our real endpoints (test/helpers/voice.ts linkAccount); the token endpoint starts the device's workflow. */
export async function linkDevice(voice: VoiceTestPlatform, client: VoiceClient): Promise<LinkedDevice> {
  const account: LinkedAccount = await linkAccount(voice, client);
  const device = await linkedDevice(voice.platform, account.userId);
  return {
    deviceId: device.id,
    userId: account.userId,
    client,
    handle: voice.platform.client.workflow.getHandle<typeof voiceDeviceWorkflow>(device.workflowId),
    tokens: { accessToken: account.accessToken, refreshToken: account.refreshToken },
    issued: [account.accessToken, account.refreshToken],
    secrets: [account.accessToken, account.refreshToken, account.sessionToken, account.sentState, client.clientSecret],
  };
}

/** What a linked platform does every so often: refresh our tokens at our token endpoint, as it authenticates. */
export async function refreshAsPlatform(voice: VoiceTestPlatform, device: LinkedDevice): Promise<{ status: number; error?: string }> {
  const answer = await postAsVoiceClient(voice.platform, '/oauth/token', device.client, { grant_type: 'refresh_token', refresh_token: device.tokens.refreshToken });
  if (answer.status !== 200) return { status: answer.status, error: answer.body.error as string };
  device.tokens = { accessToken: answer.body.access_token as string, refreshToken: (answer.body.refresh_token as string | undefined) ?? device.tokens.refreshToken };
  device.issued.push(device.tokens.accessToken, device.tokens.refreshToken);
  device.secrets.push(device.tokens.accessToken, device.tokens.refreshToken);
  return { status: 200 };
}

/** The tokens of ours the device was ever given that still introspect as active (asked as its client). */
export async function activeTokens(voice: VoiceTestPlatform, device: LinkedDevice): Promise<string[]> {
  const active: string[] = [];
  for (const token of new Set(device.issued)) if ((await introspect(voice.platform, device.client, token)).active) active.push(token);
  return active;
}

/** The user enables the skill's permission in `region`: Alexa hands the AcceptGrant code (and its region) to the API, which asks the device's workflow to exchange it. */
export async function grantAlexaPermission(voice: VoiceTestPlatform, device: LinkedDevice, region: FakeAlexaRegion = 'NA') {
  const { code, customerId } = voice.amazon.issueGrantCode({ region });
  device.secrets.push(code);
  const { platform } = voice;
  const row = (await findVoiceDevice(platform.db, device.deviceId))!;
  const result = await acceptAlexaGrant({ db: platform.db, crypto: platform.crypto, config: platform.config, temporal: platform.client }, row, code, region);
  return { customerId, result };
}

/**
 * The workflow's outcome, waited for without letting the time-skipping server skip time (its own
 * client skips to the next deadline it knows while it waits, years ahead when nothing else is due):
 * tests that let simulated time pass say so with clock.advance.
 */
export function outcomeOf(voice: VoiceTestPlatform, handle: WorkflowHandle): Promise<unknown> {
  const { platform } = voice;
  const client = new Client({ connection: platform.temporal.connection, namespace: platform.config.temporal.namespace, dataConverter: { payloadCodecs: [platform.payloadCodec] } });
  return client.workflow.getHandle(handle.workflowId).result();
}

/** Queries the device workflow's status until `predicate` holds (real time; fine for short waits). */
export function waitForDeviceState(device: LinkedDevice, predicate: (state: VoiceDeviceState) => boolean, timeoutMs = 30_000): Promise<VoiceDeviceState> {
  return waitFor(() => device.handle.query(voiceDeviceStatusQuery), predicate, 'the device state', timeoutMs);
}

/** YYYY-MM-DD of a time, `days` later (UTC, the day occupancy is reported for). */
export function dayOf(at: number, days = 0): string {
  return new Date(at + days * 86_400_000).toISOString().slice(0, 10);
}
