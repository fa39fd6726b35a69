import type { VoiceDeviceRow } from '../../../db/queries/voice-devices';
import type { AuditEntry } from '../../../platform/audit';
import { unlinkSignal, type UnlinkDirection, type UnlinkSignal } from '../../../workflows/voice-device-messages';
import type { ApiServices } from '../../services';
import { voiceDeviceWorkflowWithStart } from './device-workflow';

/**
 * How long telling a device's workflow may hold up the answer: Temporal's client retries an
 * unreachable server with backoff and notices the deadline at its next attempt, so a signal to a
 * server that is down fails within a few seconds instead of twenty.
 */
const SIGNAL_DEADLINE_MS = 3000;

export interface UnlinkRequest {
  direction: UnlinkDirection;
  requestedBy: UnlinkSignal['requestedBy'];
  origin?: AuditEntry['origin'];
}

/**
 * Asks a device's workflow to unlink (its activities revoke every token of the device, wipe the
 * platform's credentials, and audit VoiceDeviceUnlink), then audits who asked from which direction.
 * With start, like a connection's disconnect: a linked device whose workflow is gone (terminated,
 * never started) gets a new run that unlinks it. A device already unlinked is left alone.
 */
export async function requestVoiceDeviceUnlink(
  services: Pick<ApiServices, 'audit' | 'config' | 'temporal'>,
  device: VoiceDeviceRow,
  request: UnlinkRequest,
): Promise<'requested' | 'already_unlinked'> {
  if (device.status === 'unlinked') return 'already_unlinked';
  const { direction, requestedBy } = request;
  await services.temporal.connection.withDeadline(Date.now() + SIGNAL_DEADLINE_MS, () =>
    services.temporal.workflow.signalWithStart('voiceDeviceWorkflow', {
      ...voiceDeviceWorkflowWithStart(services.config, device),
      signal: unlinkSignal,
      signalArgs: [{ direction, requestedBy }],
    }),
  );
  await services.audit.record({
    action: 'VoiceDeviceUnlinkRequested',
    outcome: 'success',
    actor: auditActor(device, requestedBy),
    userId: device.userId,
    clientId: device.clientId,
    provider: device.platform,
    ...(request.origin ? { origin: request.origin } : {}),
    details: { deviceId: device.id, direction, requestedBy: requestedBy.type },
  });
  return 'requested';
}

/** The platforms act as the voice client; the rest as who they are. */
function auditActor(device: VoiceDeviceRow, requestedBy: UnlinkSignal['requestedBy']): AuditEntry['actor'] {
  if (requestedBy.type === 'platform') return { type: 'client', id: device.clientId };
  return requestedBy.id === undefined ? { type: requestedBy.type } : { type: requestedBy.type, id: requestedBy.id };
}
