import type { WorkflowIdReusePolicy } from '@temporalio/client';
import type { VoiceDeviceRow } from '../../../db/queries/voice-devices';
import type { Config } from '../../../platform/config';
import { voiceDeviceWorkflowStart } from '../../voice-device-workflow';

/**
 * How the API starts a device's workflow when it signals or updates one that may be gone: the
 * device's own start (api/voice-device-workflow.ts). The caller has seen the device not unlinked, so
 * a run that ended without unlinking it (terminated, crashed) is replaced: hence ALLOW_DUPLICATE,
 * where the first start rejects duplicates.
 */
export function voiceDeviceWorkflowWithStart(config: Config, device: Pick<VoiceDeviceRow, 'id' | 'platform'>) {
  return { ...voiceDeviceWorkflowStart(config, device), workflowIdReusePolicy: 'ALLOW_DUPLICATE' as WorkflowIdReusePolicy };
}
