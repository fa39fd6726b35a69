import { fileURLToPath } from 'node:url';
import type { PayloadCodec } from '@temporalio/common';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDependencies } from '../activities';
import type { Config } from '../platform/config';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

export interface ConnectionWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  dependencies: ActivityDependencies;
  /** The payload encryption codec: every payload the worker sends to Temporal is encrypted with it. */
  payloadCodec: PayloadCodec;
  /** A prebuilt bundle (WORKER_WORKFLOW_BUNDLE; tests bundle once for every worker they start); without one the worker bundles as it starts. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  interceptors?: WorkerOptions['interceptors'];
  /**
   * How long shutdown() lets running activities finish before it cancels them (WORKER_SHUTDOWN_GRACE_SECONDS).
   * Without it the SDK cancels at once, and an activity that honours cancellation loses its attempt.
   */
  shutdownGraceSeconds?: number;
  sizing: WorkerSizing;
}

/** How much the worker takes on at once and keeps in memory; bench/RESULTS.md has the measurements behind the defaults. */
export interface WorkerSizing {
  /** Activities run at once: what the database pool can serve (the configuration's workerMaxConcurrentActivities). */
  maxConcurrentActivities: number;
  maxConcurrentWorkflowTasks: number;
  /** Workflows kept in memory between their tasks (undefined: the SDK's default); the others are replayed from history at their next task. */
  maxCachedWorkflows: number | undefined;
  maxWorkflowTaskPolls: number;
  /** The share of the polls on the shared task queue, where the tasks of workflows not in the cache come. */
  nonStickyPollRatio: number;
}

export function workerSizing(config: Config): WorkerSizing {
  return {
    maxConcurrentActivities: config.workerMaxConcurrentActivities,
    maxConcurrentWorkflowTasks: config.workerMaxConcurrentWorkflowTasks,
    maxCachedWorkflows: config.workerMaxCachedWorkflows,
    maxWorkflowTaskPolls: config.workerMaxWorkflowTaskPolls,
    nonStickyPollRatio: config.workerNonStickyPollRatio,
  };
}

/** The SDK's options for the sizing. Workflow task polls are a poller behaviour: the SDK ignores maxConcurrentWorkflowTaskPolls. */
export function workerTuning(sizing: WorkerSizing) {
  return {
    maxConcurrentActivityTaskExecutions: sizing.maxConcurrentActivities,
    maxConcurrentWorkflowTaskExecutions: sizing.maxConcurrentWorkflowTasks,
    workflowTaskPollerBehavior: { type: 'simple-maximum', maximum: sizing.maxWorkflowTaskPolls },
    nonStickyToStickyPollRatio: sizing.nonStickyPollRatio,
    ...(sizing.maxCachedWorkflows !== undefined ? { maxCachedWorkflows: sizing.maxCachedWorkflows } : {}),
  } satisfies Partial<WorkerOptions>;
}

export function createConnectionWorker(options: ConnectionWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    activities: createActivities(options.dependencies),
    dataConverter: { payloadCodecs: [options.payloadCodec] },
    ...(options.interceptors ? { interceptors: options.interceptors } : {}),
    ...(options.shutdownGraceSeconds !== undefined ? { shutdownGraceTime: options.shutdownGraceSeconds * 1000 } : {}),
    ...workerTuning(options.sizing),
    ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
  });
}
