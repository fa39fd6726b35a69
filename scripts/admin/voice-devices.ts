import { requestVoiceDeviceUnlink } from '../../api/plugins/voice/unlink';
import { alexaEventsPermitted, findVoiceDevice, listVoiceDevices, voiceDeviceStatus, voicePlatform, type VoiceDeviceFilters } from '../../db/queries/voice-devices';
import { AuditLog } from '../../platform/audit';
import { CommandFailed, oneOf, stringOption, UsageError, uuidArgument, type AdminCommand } from './command';
import { operatorId } from './connection-actions';
import { formatTable, printJson, timeCell } from './table';

/**
 * Voice device links (one per Alexa or Google account link). Unlinking goes through the device's
 * workflow, the one owner of the device's tokens, the same way as the user's unlink in the PM app.
 */

const iso = (epochMs: number | null) => (epochMs === null ? null : new Date(epochMs).toISOString());

export const voiceDevicesListCommand: AdminCommand = {
  name: 'voice-devices list',
  synopsis: '[--user EMAIL] [--platform alexa|google] [--status S] [--json]',
  summary: 'list voice device links: user, status, when the link ends unless used, unlink reason, last error',
  options: { user: { type: 'string' }, platform: { type: 'string' }, status: { type: 'string' }, json: { type: 'boolean' } },
  positionals: [],
  async run({ values }, context) {
    const user = stringOption(values, 'user');
    const platform = stringOption(values, 'platform');
    const status = stringOption(values, 'status');
    if (user !== undefined && !/^[^\s@]+@[^\s@]+$/.test(user)) throw new UsageError(`--user: "${user}" is not an email address`);
    const filters: VoiceDeviceFilters = {
      ...(user === undefined ? {} : { userEmail: user }),
      ...(platform === undefined ? {} : { platform: oneOf(platform, voicePlatform.options, '--platform') }),
      ...(status === undefined ? {} : { status: oneOf(status, voiceDeviceStatus.options, '--status') }),
    };
    const devices = (await listVoiceDevices(await context.db(), filters)).map((device) => ({
      ...device,
      alexaEventsPermitted: alexaEventsPermitted(device),
      createdAt: iso(device.createdAt)!,
      linkExpiresAt: iso(device.linkExpiresAt),
      unlinkedAt: iso(device.unlinkedAt),
    }));
    if (values.json) {
      printJson({ devices });
      return 0;
    }
    const rows = devices.map((device) => [
      device.id,
      device.platform,
      device.userEmail,
      device.status,
      timeCell(device.createdAt),
      timeCell(device.linkExpiresAt),
      device.unlinkReason ?? '-',
      device.lastErrorKind ?? '-',
      device.workflowId,
    ]);
    console.log(formatTable(['DEVICE', 'PLATFORM', 'USER', 'STATUS', 'LINKED', 'LINK EXPIRES', 'UNLINK REASON', 'LAST ERROR', 'WORKFLOW'], rows));
    console.log(`\n${devices.length} device link(s).`);
    return 0;
  },
};

export const voiceDevicesUnlinkCommand: AdminCommand = {
  name: 'voice-devices unlink',
  synopsis: '<deviceId> [--operator NAME] [--json]',
  summary: "unlink through the device's workflow: revoke our tokens and the platform's, audit (direction: operator)",
  options: { operator: { type: 'string' }, json: { type: 'boolean' } },
  positionals: ['deviceId'],
  async run({ values, positionals }, context) {
    const deviceId = uuidArgument(positionals[0]!, '<deviceId>');
    const requestedBy = { type: 'operator' as const, id: operatorId(values) };
    const db = await context.db();
    const device = await findVoiceDevice(db, deviceId);
    if (!device) throw new CommandFailed(`no voice device ${deviceId}`);
    const temporal = await context.temporalClient();
    const outcome = await requestVoiceDeviceUnlink({ audit: new AuditLog(db), config: context.config(), temporal }, device, { direction: 'operator', requestedBy });
    if (outcome === 'already_unlinked') throw new CommandFailed(`voice device ${device.id} is already unlinked`);
    if (values.json) printJson({ deviceId: device.id, workflowId: device.workflowId, direction: 'operator', requestedBy });
    else console.log(`unlink requested from ${device.workflowId} by operator ${requestedBy.id}; follow it with: npm run admin -- voice-devices list --json`);
    return 0;
  },
};
