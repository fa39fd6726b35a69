import {
  findVoiceDevice,
  finishVoiceDeviceUnlink,
  latestRefreshTokenExpiry,
  markAgentUserDeleted,
  readVoiceDeviceSecrets,
  type VoiceDeviceRow,
} from '../db/queries/voice-devices';
import { endVoiceDeviceLinkNow } from '../platform/oauth-server/voice-device-unlink';
import type { ActivityDependencies } from './dependencies';
import { deviceAuditEntry, platformCallOptions, recordedVoiceFailure, requireHomeGraph } from './voice-device-support';

type VoiceDeviceStatus = VoiceDeviceRow['status'];

/** Who ended a link, from which direction (workflows/voice-device-messages.ts UnlinkSignal: ids and words only). */
export interface VoiceUnlinkRequest {
  deviceId: string;
  direction: string;
  requestedBy: { type: 'user' | 'operator' | 'system' | 'platform'; id?: string };
}

export interface VoiceDeviceLink {
  status: VoiceDeviceStatus;
  /** The newest expiry among the grant's refresh tokens, when it is still ahead; null when none is live. */
  linkExpiresAt: number | null;
  /** Why an unlink began, when one did (an unlink that a crashed run left `unlinking` is finished with it). */
  unlinkReason: string | null;
}

export type AgentUserDeletion = 'deleted' | 'not_found' | 'deleted_before' | 'not_google';

/**
 * The device link's own record: how long our grant lives, and the unlink that ends it. Every step is
 * idempotent: a retried unlink neither audits twice nor asks Home Graph twice.
 */
export function createVoiceLinkActivities({ db, voice, audit, clock }: ActivityDependencies) {
  return {
    /** A removed device reads as unlinked: there is nothing left to keep alive. */
    async readVoiceDeviceLink(input: { deviceId: string }): Promise<VoiceDeviceLink> {
      const device = await findVoiceDevice(db, input.deviceId);
      if (!device) return { status: 'unlinked', linkExpiresAt: null, unlinkReason: null };
      const expiresAt = await latestRefreshTokenExpiry(db, device.grantId);
      return { status: device.status, linkExpiresAt: expiresAt !== null && expiresAt > clock().getTime() ? expiresAt : null, unlinkReason: device.unlinkReason };
    },

    /**
     * Ends our side of the link in one transaction (platform/oauth-server/voice-device-unlink.ts): the
     * grant and every token issued under it revoked, the platform's credentials wiped, the unlink
     * audited once. Google devices stay `unlinking` until Home Graph forgets the agent user. Answers
     * the status the device has afterwards, whoever ended the link.
     */
    async revokeVoiceDeviceLink(input: VoiceUnlinkRequest): Promise<VoiceDeviceStatus> {
      const device = await findVoiceDevice(db, input.deviceId);
      if (!device) return 'unlinked';
      return db.transaction(async (transaction) => {
        await endVoiceDeviceLinkNow(transaction, audit, device, { direction: input.direction, requestedBy: input.requestedBy }, clock());
        return (await findVoiceDevice(transaction, device.id))!.status;
      });
    },

    /**
     * Google's part of an unlink: `DELETE agentUsers/{deviceId}`, once per device. The deletion is
     * recorded before the device becomes `unlinked`, so a retry after a lost answer skips the call;
     * a 404 means Home Graph had already forgotten the user, which is just as good.
     */
    async deleteGoogleAgentUser(input: { deviceId: string }): Promise<AgentUserDeletion> {
      const device = await findVoiceDevice(db, input.deviceId);
      if (!device || device.platform !== 'google') return 'not_google';
      const secrets = (await readVoiceDeviceSecrets(db, device.id))!;
      let outcome: AgentUserDeletion = 'deleted_before';
      if (secrets.agentUserDeletedAt === null) {
        const homeGraph = requireHomeGraph(voice);
        try {
          outcome = await homeGraph.deleteAgentUser(device.id, platformCallOptions());
        } catch (error) {
          throw await recordedVoiceFailure(db, device.id, error);
        }
        await db.transaction(async (transaction) => {
          if (!(await markAgentUserDeleted(transaction, device.id, clock()))) return;
          await audit.record(
            { action: 'OAuthRevoke', outcome: 'success', actor: { type: 'system' }, ...deviceAuditEntry(device), details: { deviceId: device.id, homeGraphAgentUser: outcome } },
            transaction,
          );
        });
      }
      await finishVoiceDeviceUnlink(db, device.id, clock());
      return outcome;
    },

    /** An unlink whose Home Graph deletion could not be done: our side is gone all the same, and the failure is on record. */
    async abandonGoogleAgentUserDeletion(input: { deviceId: string; error: string }): Promise<void> {
      const device = await findVoiceDevice(db, input.deviceId);
      if (!device || device.status !== 'unlinking') return;
      await db.transaction(async (transaction) => {
        await finishVoiceDeviceUnlink(transaction, device.id, clock());
        await audit.record(
          { action: 'OAuthRevoke', outcome: 'failure', actor: { type: 'system' }, ...deviceAuditEntry(device), details: { deviceId: device.id, homeGraphAgentUser: 'failed', reason: input.error } },
          transaction,
        );
      });
    },
  };
}
