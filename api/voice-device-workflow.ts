import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import type { FastifyBaseLogger } from 'fastify';
import { markVoiceDeviceWorkflowStarted, type VoiceDeviceRow } from '../db/queries/voice-devices';
import { voiceDeviceWorkflowId, type VoiceDeviceWorkflowInput } from '../workflows/voice-device-messages';
import type { Config } from '../platform/config';
import type { ApiServices } from './services';

/**
 * How long starting a device's workflow may hold up the answer that linked the device. Temporal's
 * client retries an unreachable server with backoff and notices the deadline only at its next attempt,
 * so a start against a server that is down fails within about 2 s: inside the 4.5 s Alexa waits.
 */
const START_DEADLINE_MS = 1500;

/** What every start of a device's workflow (start, signal-with-start, update-with-start) is given: ids and the refresh policy, never a secret. */
export function voiceDeviceWorkflowStart(config: Config, device: Pick<VoiceDeviceRow, 'id' | 'platform'>) {
  const input: VoiceDeviceWorkflowInput = {
    deviceId: device.id,
    platform: device.platform,
    refreshPolicy: { marginSeconds: config.tokenRefresh.marginSeconds, jitterSeconds: config.tokenRefresh.jitterSeconds },
  };
  return { workflowId: voiceDeviceWorkflowId(device.platform, device.id), taskQueue: config.temporal.taskQueue, args: [input] as [VoiceDeviceWorkflowInput] };
}

/**
 * Starts the device's `voice-device:<platform>:<deviceId>` workflow unless it is known to run, and
 * records that it did. A start that finds the workflow already there counts as started. It never
 * throws: it runs after the tokens were committed, and losing their answer would unlink the device.
 * A failure is logged and answered false; the next refresh of the device's tokens tries again
 * (voice_devices.workflow_started_at stays null until a start succeeds). `signal` cancels a call in
 * flight (the api-server is stopping); a start it finds aborted is not made.
 */
export async function ensureVoiceDeviceWorkflow(
  services: Pick<ApiServices, 'temporal' | 'db' | 'config'>,
  device: Pick<VoiceDeviceRow, 'id' | 'platform' | 'status' | 'workflowStartedAt'>,
  log: FastifyBaseLogger,
  signal?: AbortSignal,
): Promise<boolean> {
  if (device.workflowStartedAt !== null) return true;
  if (device.status !== 'linked' || signal?.aborted) return false;
  const { temporal, db, config } = services;
  const start = voiceDeviceWorkflowStart(config, device);
  const startWorkflow = () =>
    temporal.connection.withDeadline(Date.now() + START_DEADLINE_MS, () =>
      // By name: the workflow's code belongs to the worker.
      temporal.workflow.start<(input: VoiceDeviceWorkflowInput) => Promise<unknown>>('voiceDeviceWorkflow', {
        ...start,
        // A device's workflow that has ended (unlinked) is never started again under the same id.
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
      }),
    );
  try {
    try {
      await (signal ? temporal.connection.withAbortSignal(signal, startWorkflow) : startWorkflow());
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    }
    await markVoiceDeviceWorkflowStarted(db, device.id);
    return true;
  } catch (error) {
    log.warn({ workflowId: start.workflowId, err: error }, 'the voice device workflow could not be started; the next token refresh tries again');
    return false;
  }
}

/**
 * The device workflow starts of one api-server. A refresh answers without waiting for its start, so
 * starts outlive their requests; closing aborts them and waits until each has settled, before the
 * Temporal connection closes. The wait matters: Temporal's client retries an unreachable server on a
 * timer that an abort does not clear, and a retry that fires after the connection closed throws from
 * that timer and ends the process.
 */
export class VoiceDeviceWorkflowStarts {
  /** Each start with its own controller: Temporal's client never removes the listener it adds to a signal. */
  private readonly pending = new Map<Promise<boolean>, AbortController>();

  constructor(private readonly services: Pick<ApiServices, 'temporal' | 'db' | 'config'>) {}

  /** As ensureVoiceDeviceWorkflow; the start is awaited by `close` whether or not its caller awaits it. */
  ensure(device: Pick<VoiceDeviceRow, 'id' | 'platform' | 'status' | 'workflowStartedAt'>, log: FastifyBaseLogger): Promise<boolean> {
    const controller = new AbortController();
    const started = ensureVoiceDeviceWorkflow(this.services, device, log, controller.signal);
    this.pending.set(started, controller);
    void started.finally(() => this.pending.delete(started));
    return started;
  }

  async close(): Promise<void> {
    for (const controller of this.pending.values()) controller.abort();
    await Promise.all(this.pending.keys());
  }
}
