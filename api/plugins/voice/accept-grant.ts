import { ApplicationFailure } from '@temporalio/common';
import { WithStartWorkflowOperation, WorkflowUpdateFailedError } from '@temporalio/client';
import { voiceDeviceColumn } from '../../../db/encrypted-columns';
import { storeLwaGrantCode, type VoiceDeviceRow } from '../../../db/queries/voice-devices';
import { acceptGrantUpdate, type AcceptGrantResult } from '../../../workflows/voice-device-messages';
import { HttpError } from '../../errors';
import type { ApiServices } from '../../services';
import { voiceDeviceWorkflowStart } from './device-workflow';

/**
 * Alexa's permission grant (an LWA authorization code, from an AcceptGrant directive or the app):
 * the code waits on the device row, encrypted and bound to it, and the device workflow exchanges it
 * at once (the code lives minutes) and answers with the outcome. With start: a linked device whose
 * workflow is gone gets a new run. Nothing secret reaches Temporal.
 */
export async function acceptAlexaGrant(
  services: Pick<ApiServices, 'db' | 'crypto' | 'config' | 'temporal'>,
  device: VoiceDeviceRow,
  code: string,
): Promise<AcceptGrantResult> {
  const codeEnc = services.crypto.encrypt(code, voiceDeviceColumn(device.id, 'lwa_grant_code_enc'));
  if (!(await storeLwaGrantCode(services.db, device.id, codeEnc))) return { accepted: false, reason: 'device_unlinked' };
  const { workflowId, taskQueue, args, workflowIdReusePolicy } = voiceDeviceWorkflowStart(services.config, device);
  try {
    return await services.temporal.workflow.executeUpdateWithStart(acceptGrantUpdate, {
      startWorkflowOperation: new WithStartWorkflowOperation('voiceDeviceWorkflow', { workflowId, taskQueue, args, workflowIdReusePolicy, workflowIdConflictPolicy: 'USE_EXISTING' }),
    });
  } catch (error) {
    // The workflow's validator refuses a device that is unlinking (or not Alexa's) before anything is done.
    if (error instanceof WorkflowUpdateFailedError && error.cause instanceof ApplicationFailure) return { accepted: false, reason: 'device_unlinked' };
    throw error;
  }
}

/**
 * The HTTP answer of a refused grant: Login with Amazon's own refusal of the code is final (400
 * invalid_grant); a device unlinked meanwhile is gone (404); anything else (LWA not configured, our
 * LWA client refused, LWA unreachable) is not the caller's fault and may work later (503).
 */
export function acceptGrantRefusal(reason: string): HttpError {
  if (reason === 'invalid_grant') return new HttpError(400, 'invalid_grant', 'Login with Amazon refused the code: it has expired, was used already, or is not for this skill');
  if (reason === 'device_unlinked') return new HttpError(404, 'no_linked_device', 'The Alexa device was unlinked meanwhile');
  return new HttpError(503, 'lwa_unavailable', `Login with Amazon could not take the code now (${reason}); try again`);
}
