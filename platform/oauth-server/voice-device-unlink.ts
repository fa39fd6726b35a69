import type { CommonQueryMethods } from 'slonik';
import { markGrantRevoked } from '../../db/queries/oauth-grants';
import { revokeGrantTokens } from '../../db/queries/oauth-tokens';
import { endVoiceDeviceLink, readVoiceDeviceSecrets, type VoiceDeviceRow } from '../../db/queries/voice-devices';
import type { AuditEntry, AuditLog } from '../audit';

export interface VoiceDeviceUnlink {
  /** An UnlinkDirection (workflows/voice-device-messages.ts): the device's unlink reason. */
  direction: string;
  requestedBy: { type: 'user' | 'operator' | 'system' | 'platform'; id?: string };
  origin?: AuditEntry['origin'];
}

/**
 * Ends our side of a device link inside the caller's transaction, as the device workflow's own unlink
 * does (activities/voice-device-link.ts revokeVoiceDeviceLink): the grant and every token issued under
 * it are revoked, the platform's credentials (LWA tokens, a waiting AcceptGrant code) wiped, and the
 * device becomes `unlinked`, or `unlinking` while Google's Home Graph still knows the agent user (the
 * workflow deletes it and finishes). Only the call that ends a linked device audits VoiceDeviceUnlink.
 *
 * For paths that revoke a device's tokens outside its workflow (the user revoking the grant, the
 * platform revoking its refresh token): the caller signals the workflow after commit, and a lost
 * signal loses nothing, since the workflow follows the row the next time it reads it. Answers
 * whether this call ended the link.
 */
export async function endVoiceDeviceLinkNow(
  transaction: CommonQueryMethods,
  audit: AuditLog,
  device: Pick<VoiceDeviceRow, 'id' | 'platform' | 'userId' | 'clientId' | 'grantId'>,
  unlink: VoiceDeviceUnlink,
  at: Date,
): Promise<boolean> {
  // The common lock order: the grant first, then its tokens, then the device row.
  const grantRevokedNow = await markGrantRevoked(transaction, device.grantId);
  await revokeGrantTokens(transaction, device.grantId, `voice device unlinked: ${unlink.direction}`);
  const secrets = await readVoiceDeviceSecrets(transaction, device.id);
  const homeGraphLeft = device.platform === 'google' && secrets?.agentUserDeletedAt === null;
  const previous = await endVoiceDeviceLink(transaction, device.id, { to: homeGraphLeft ? 'unlinking' : 'unlinked', reason: unlink.direction, at });
  if (previous !== 'linked') return false;
  const { requestedBy } = unlink;
  // A platform acts as its OAuth client; everyone else as who they are.
  const actor: AuditEntry['actor'] =
    requestedBy.type === 'platform' ? { type: 'client', id: device.clientId } : { type: requestedBy.type, ...(requestedBy.id === undefined ? {} : { id: requestedBy.id }) };
  const entry = { actor, userId: device.userId, clientId: device.clientId, provider: device.platform, ...(unlink.origin ? { origin: unlink.origin } : {}) };
  await audit.record({ ...entry, action: 'VoiceDeviceUnlink', outcome: 'success', details: { deviceId: device.id, direction: unlink.direction, platform: device.platform } }, transaction);
  await audit.record(
    { ...entry, action: 'OAuthRevoke', outcome: 'success', details: { deviceId: device.id, grantId: device.grantId, grantRevokedNow, platformCredentialsWiped: true } },
    transaction,
  );
  return true;
}
