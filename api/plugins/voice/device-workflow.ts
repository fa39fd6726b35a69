import type { WorkflowIdReusePolicy } from '@temporalio/client';
import type { VoiceDeviceRow } from '../../../db/queries/voice-devices';
import type { Config } from '../../../platform/config';
import type { VoiceDeviceWorkflowInput } from '../../../workflows/voice-device-messages';

/**
 * How the API starts a device's workflow when it signals or updates one that may be gone: its id,
 * queue and input (ids and the refresh policy, never a secret). The caller has seen the device not
 * unlinked, so a run that ended without unlinking it (terminated, crashed) is replaced: hence
 * ALLOW_DUPLICATE, where the first start (api/voice-device-workflow.ts) rejects duplicates.
 */
export function voiceDeviceWorkflowStart(config: Config, device: Pick<VoiceDeviceRow, 'id' | 'platform' | 'workflowId'>) {
  const input: VoiceDeviceWorkflowInput = {
    deviceId: device.id,
    platform: device.platform,
    refreshPolicy: { marginSeconds: config.tokenRefresh.marginSeconds, jitterSeconds: config.tokenRefresh.jitterSeconds },
  };
  return {
    workflowId: device.workflowId,
    taskQueue: config.temporal.taskQueue,
    args: [input] as [VoiceDeviceWorkflowInput],
    workflowIdReusePolicy: 'ALLOW_DUPLICATE' as WorkflowIdReusePolicy,
  };
}
