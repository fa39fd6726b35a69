import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import { voiceDeviceColumn } from '../db/encrypted-columns';
import { propertyOccupancyOn, type PropertyOccupancy } from '../db/queries/voice-commands';
import { readVoiceDeviceSecrets, type VoiceDeviceRow } from '../db/queries/voice-devices';
import { VoicePlatformError } from '../platform/voice/voice-platform';
import type { ActivityDependencies, TokenState } from './dependencies';
import { FailureType } from './failure-types';
import { addOrUpdateReport, changeReport } from './voice-device-alexa-events';
import { refreshLwaTokens } from './voice-device-credentials';
import { linkedVoiceDevice, platformCallOptions, recordedVoiceFailure, requireHomeGraph } from './voice-device-support';

/** A token this close to its expiry is refreshed before an event carries it, so the gateway never sees an expired one. */
const MIN_EVENT_TOKEN_VALIDITY_MS = 60_000;

export interface VoiceReport {
  outcome: 'sent' | 'nothing_to_report' | 'no_permission_yet';
  events: number;
  /** The LWA tokens after the report, when it had to refresh them (the workflow adopts them). */
  lwa?: TokenState;
}

/** What the platforms are told about a user's properties: occupancy today, as Google's and Alexa's devices. */
export function createVoiceReportActivities(dependencies: ActivityDependencies) {
  const { db, crypto, voice, clock } = dependencies;

  return {
    /** Google: asks Google to SYNC the agent user. A 404 while the link is new only means Google has not recorded it yet. */
    async requestVoiceDeviceSync(input: { deviceId: string }): Promise<'requested' | 'agent_user_not_found'> {
      const device = await linkedVoiceDevice(db, input.deviceId);
      try {
        await requireHomeGraph(voice).requestSync(device.id, platformCallOptions());
        return 'requested';
      } catch (error) {
        if (error instanceof VoicePlatformError && error.kind === 'agent_user_not_found') return 'agent_user_not_found';
        throw await recordedVoiceFailure(db, device.id, error);
      }
    },

    /**
     * Reports the occupancy of the user's properties today: to Home Graph (reportStateAndNotification,
     * the property ids as device ids), or to the user's Alexa event gateway (an AddOrUpdateReport for
     * `discovery`, else a ChangeReport per property). A gateway 401 gets one forced LWA refresh and one
     * retry; a 403 means the permission is gone (PlatformPermissionRevoked); Home Graph's 404 means
     * Google unlinked the user (AgentUserGone). Reports are idempotent, so a retried one repeats all.
     */
    async sendVoiceStateReport(input: { deviceId: string; discovery: boolean }): Promise<VoiceReport> {
      const device = await linkedVoiceDevice(db, input.deviceId);
      const now = clock();
      const properties = await propertyOccupancyOn(db, device.userId, now.toISOString().slice(0, 10));
      return device.platform === 'google' ? reportToHomeGraph(device, properties) : reportToAlexa(device, properties, input.discovery, now);
    },
  };

  async function reportToHomeGraph(device: VoiceDeviceRow, properties: readonly PropertyOccupancy[]): Promise<VoiceReport> {
    if (properties.length === 0) return { outcome: 'nothing_to_report', events: 0 };
    const states = Object.fromEntries(properties.map((property) => [property.id, { occupancy: property.occupied ? 'OCCUPIED' : 'UNOCCUPIED' }]));
    try {
      await requireHomeGraph(voice).reportStateAndNotification(device.id, randomUUID(), states, platformCallOptions());
    } catch (error) {
      throw await recordedVoiceFailure(db, device.id, error);
    }
    return { outcome: 'sent', events: 1 };
  }

  async function reportToAlexa(device: VoiceDeviceRow, properties: readonly PropertyOccupancy[], discovery: boolean, now: Date): Promise<VoiceReport> {
    let access = await lwaAccess(device.id);
    if (!access) return { outcome: 'no_permission_yet', events: 0 };
    const events = discovery
      ? properties.length > 0 ? [(token: string) => addOrUpdateReport(properties, token)] : []
      : properties.map((property) => (token: string) => changeReport(property, token, now));
    if (events.length === 0) return { outcome: 'nothing_to_report', events: 0 };

    let refreshed: TokenState | undefined;
    const refresh = async () => {
      refreshed = await refreshLwaTokens(dependencies, device.id, access!.state.tokenVersion);
      access = await lwaAccess(device.id);
      if (!access) throw ApplicationFailure.nonRetryable('the device holds no Login with Amazon tokens', FailureType.grantRevoked);
    };
    if (access.state.accessTokenExpiresAt - clock().getTime() < MIN_EVENT_TOKEN_VALIDITY_MS) await refresh();

    const region = device.alexaRegion ?? 'NA';
    let forcedRefresh = false;
    for (const event of events) {
      for (;;) {
        try {
          await voice.alexaEventGateway.send(region, access.accessToken, event(access.accessToken), platformCallOptions());
          break;
        } catch (error) {
          if (error instanceof VoicePlatformError && error.kind === 'access_token_rejected' && !forcedRefresh) {
            forcedRefresh = true;
            await refresh();
            continue;
          }
          throw await recordedVoiceFailure(db, device.id, error);
        }
      }
    }
    return { outcome: 'sent', events: events.length, ...(refreshed ? { lwa: refreshed } : {}) };
  }

  async function lwaAccess(deviceId: string): Promise<{ state: TokenState; accessToken: string } | null> {
    const secrets = await readVoiceDeviceSecrets(db, deviceId);
    if (!secrets?.lwaAccessTokenEnc || secrets.lwaAccessTokenExpiresAt === null) return null;
    return {
      state: { tokenVersion: secrets.lwaTokenVersion, accessTokenExpiresAt: secrets.lwaAccessTokenExpiresAt },
      accessToken: crypto.decrypt(secrets.lwaAccessTokenEnc, voiceDeviceColumn(deviceId, 'lwa_access_token_enc')),
    };
  }
}
