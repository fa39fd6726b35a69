import { ApplicationFailure } from '@temporalio/common';
import { WithStartWorkflowOperation, WorkflowUpdateFailedError } from '@temporalio/client';
import { voiceDeviceColumn } from '../../../db/encrypted-columns';
import { storeLwaGrantCode, type AlexaRegionName, type VoiceDeviceRow } from '../../../db/queries/voice-devices';
import { acceptGrantUpdate, type AcceptGrantResult } from '../../../workflows/voice-device-messages';
import { HttpError } from '../../errors';
import type { ApiServices } from '../../services';
import { voiceDeviceWorkflowWithStart } from './device-workflow';

/**
 * The failure type the workflow's update validator (workflows/voice-device.ts) refuses a device with
 * that is unlinking or unlinked, before anything is done. Any other failure of the update is the
 * workflow's trouble, not the caller's: it may work later.
 */
const DEVICE_NOT_LINKED = 'VoiceDeviceNotLinked';

/**
 * Alexa's permission grant (an LWA authorization code, from an AcceptGrant directive or the app):
 * the code waits on the device row, encrypted and bound to it, with the region whose event gateway
 * the permission is for when the caller knows it, and the device workflow exchanges it at once (the
 * code lives minutes) and answers with the outcome. With start: a linked device whose workflow is
 * gone gets a new run. Nothing secret reaches Temporal.
 */
export async function acceptAlexaGrant(
  services: Pick<ApiServices, 'db' | 'crypto' | 'config' | 'temporal'>,
  device: VoiceDeviceRow,
  code: string,
  region: AlexaRegionName | null,
): Promise<AcceptGrantResult> {
  const codeEnc = services.crypto.encrypt(code, voiceDeviceColumn(device.id, 'lwa_grant_code_enc'));
  if (!(await storeLwaGrantCode(services.db, device.id, codeEnc, region))) return { accepted: false, reason: 'device_unlinked' };
  const { workflowId, taskQueue, args, workflowIdReusePolicy } = voiceDeviceWorkflowWithStart(services.config, device);
  try {
    return await services.temporal.workflow.executeUpdateWithStart(acceptGrantUpdate, {
      startWorkflowOperation: new WithStartWorkflowOperation('voiceDeviceWorkflow', { workflowId, taskQueue, args, workflowIdReusePolicy, workflowIdConflictPolicy: 'USE_EXISTING' }),
    });
  } catch (error) {
    if (!(error instanceof WorkflowUpdateFailedError)) throw error;
    const refusal = error.cause instanceof ApplicationFailure ? error.cause.type : undefined;
    return { accepted: false, reason: refusal === DEVICE_NOT_LINKED ? 'device_unlinked' : 'device_workflow_failed' };
  }
}

/**
 * The HTTP answer of a refused grant: Login with Amazon's own refusal of the code is final (400
 * invalid_grant); a device unlinked meanwhile is gone (404); anything else (LWA not configured, our
 * LWA client refused, LWA unreachable, the device workflow failing) is not the caller's fault and
 * may work later (503).
 */
export function acceptGrantRefusal(reason: string): HttpError {
  if (reason === 'invalid_grant') return new HttpError(400, 'invalid_grant', 'Login with Amazon refused the code: it has expired, was used already, or is not for this skill');
  if (reason === 'device_unlinked') return new HttpError(404, 'no_linked_device', 'The Alexa device was unlinked meanwhile');
  if (reason === 'device_workflow_failed') return new HttpError(503, 'device_workflow_unavailable', 'The device could not take the code now; try again');
  return new HttpError(503, 'lwa_unavailable', `Login with Amazon could not take the code now (${reason}); try again`);
}
