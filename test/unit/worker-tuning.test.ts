import { describe, expect, it } from 'vitest';
import { noopMetricMeter } from '@temporalio/common';
import { DefaultLogger } from '@temporalio/worker';
import { compileWorkerOptions, toNativeWorkerOptions } from '@temporalio/worker/lib/worker-options';
import { loadConfig } from '../../platform/config';
import { workerSizing, workerTuning } from '../../worker/worker';

/** What the SDK hands its core for the worker settings: options it ignores would pass a test of loadConfig alone. */
function nativeOptions(environment: Record<string, string>) {
  const sizing = workerSizing(loadConfig({ APP_ENV: 'development', ...environment }));
  const compiled = compileWorkerOptions({ taskQueue: 'tuning', workflowsPath: 'unused', ...workerTuning(sizing) }, new DefaultLogger('ERROR'), noopMetricMeter);
  return toNativeWorkerOptions({ ...compiled, buildId: 'tuning' });
}

describe('worker tuning reaches the SDK', () => {
  it('workflow task polls, their share on the shared queue, slots and cache', () => {
    const tuned = nativeOptions({
      WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: '60',
      WORKER_MAX_WORKFLOW_TASK_POLLS: '24',
      WORKER_NON_STICKY_POLL_RATIO: '0.75',
      WORKER_MAX_CACHED_WORKFLOWS: '500',
    });
    expect(tuned).toMatchObject({
      workflowTaskPollerBehavior: { type: 'simple-maximum', maximum: 24 },
      nonStickyToStickyPollRatio: 0.75,
      maxCachedWorkflows: 500,
    });
  });

  it('the defaults are the SDK’s own', () => {
    expect(nativeOptions({})).toMatchObject({ workflowTaskPollerBehavior: { type: 'simple-maximum', maximum: 10 }, nonStickyToStickyPollRatio: 0.2 });
  });
});
