import { markGrantRevoked } from '../db/queries/oauth-grants';
import { revokeGrantTokens } from '../db/queries/oauth-tokens';
import {
  endVoiceDeviceLink,
  findVoiceDevice,
  finishVoiceDeviceUnlink,
  latestRefreshTokenExpiry,
  markAgentUserDeleted,
  readVoiceDeviceSecrets,
  type VoiceDeviceRow,
} from '../db/queries/voice-devices';
import type { AuditEntry } from '../platform/audit';
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
     * Ends our side of the link in one transaction: the grant and every token issued under it are
     * revoked, the platform's credentials (LWA tokens, a waiting AcceptGrant code) wiped, the status
     * set, and the unlink audited once. Google devices stay `unlinking` until Home Graph forgets
     * the agent user. Answers the status the device has afterwards.
     */
    async revokeVoiceDeviceLink(input: VoiceUnlinkRequest): Promise<VoiceDeviceStatus> {
      const device = await findVoiceDevice(db, input.deviceId);
      if (!device) return 'unlinked';
      const now = clock();
      return db.transaction(async (transaction) => {
        // The common lock order: the grant first (markGrantRevoked), then its tokens, then the device row.
        const grantRevoked = await markGrantRevoked(transaction, device.grantId);
        await revokeGrantTokens(transaction, device.grantId, `voice device unlinked: ${input.direction}`);
        const secrets = await readVoiceDeviceSecrets(transaction, device.id);
        const homeGraphLeft = device.platform === 'google' && secrets?.agentUserDeletedAt === null;
        const previous = await endVoiceDeviceLink(transaction, device.id, { to: homeGraphLeft ? 'unlinking' : 'unlinked', reason: input.direction, at: now });
        if (previous !== 'linked') return previous ?? 'unlinked';
        const entry = { actor: auditActor(device.clientId, input.requestedBy), ...deviceAuditEntry(device) };
        await audit.record({ ...entry, action: 'VoiceDeviceUnlink', outcome: 'success', details: { deviceId: device.id, direction: input.direction, platform: device.platform } }, transaction);
        await audit.record(
          { ...entry, action: 'OAuthRevoke', outcome: 'success', details: { deviceId: device.id, grantId: device.grantId, grantRevokedNow: grantRevoked, platformCredentialsWiped: true } },
          transaction,
        );
        return homeGraphLeft ? 'unlinking' : 'unlinked';
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

/** A platform that unlinks acts as its OAuth client; everyone else as who they are. */
function auditActor(clientId: string, requestedBy: VoiceUnlinkRequest['requestedBy']): AuditEntry['actor'] {
  if (requestedBy.type === 'platform') return { type: 'client', id: clientId };
  return requestedBy.id === undefined ? { type: requestedBy.type } : { type: requestedBy.type, id: requestedBy.id };
}
