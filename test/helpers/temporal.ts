import temporalProto from '@temporalio/proto';
import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type ActivityExecuteInput, type ActivityInboundCallsInterceptor, type ActivityInterceptorsFactory, type Next } from '@temporalio/worker';
import { inject } from 'vitest';
import type { Activities } from '../../activities';
import { registerSearchAttributes } from '../../worker/search-attributes';
import { WORKFLOWS_PATH } from '../../worker/worker';

/**
 * A Temporal dev server from the binary the global setup found (else the SDK downloads one).
 * With `uiPort`, it also serves Temporal Web there, as `npm run dev` does; `extraArgs` go to `temporal server start-dev`.
 */
export async function startTemporalDevServer(options: { uiPort?: number; extraArgs?: string[] } = {}): Promise<TestWorkflowEnvironment> {
  const cli = inject('temporalCliPath');
  return withSearchAttributes(
    await TestWorkflowEnvironment.createLocal({
      server: {
        ...(cli ? { executable: { type: 'existing-path', path: cli } } : {}),
        ...(options.uiPort ? { ui: true, uiPort: options.uiPort } : {}),
        ...(options.extraArgs ? { extraArgs: options.extraArgs } : {}),
      },
    }),
  );
}

/**
 * Temporal's time-skipping test server, for lifecycles that span days.
 * The server stops skipping time while a workflow task or activity is in flight, and only that
 * work's own completion lets it skip again: a workflow closed under it (terminated, or ended with an
 * activity still running, temporalio/sdk-java#1138) refuses that completion, and from then on every
 * `sleep` and awaited result of the file waits in real time. So tests leave their workflows
 * running (the server goes with the file) rather than terminate one that may have work in flight.
 */
export async function startTimeSkippingServer(): Promise<TestWorkflowEnvironment> {
  const server = inject('temporalTestServerPath');
  return withSearchAttributes(await TestWorkflowEnvironment.createTimeSkipping(server ? { server: { executable: { type: 'existing-path', path: server } } } : {}));
}

/** Holds time still while an activity runs (the test server counts locks, so concurrent activities are fine). */
class TimeSkippingLock implements ActivityInboundCallsInterceptor {
  constructor(private readonly testService: NonNullable<TestWorkflowEnvironment['connection']['testService']>) {}

  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
    await this.testService.lockTimeSkipping({});
    try {
      return await next(input);
    } finally {
      await this.testService.unlockTimeSkipping({});
    }
  }
}

/**
 * The activity interceptor every worker on the time-skipping server needs: the server treats a running
 * activity as idle time, and on a loaded machine would skip past the activity's timeout while it runs.
 * Nothing on a dev server.
 */
export function timeSkippingLock(temporal: TestWorkflowEnvironment): ActivityInterceptorsFactory[] {
  const { testService } = temporal.connection;
  return testService && temporal.supportsTimeSkipping ? [() => ({ inbound: new TimeSkippingLock(testService) })] : [];
}

export interface ScriptedWorker {
  /** The worker's own task queue: workflows started on it run against the scripted activities. */
  taskQueue: string;
  /** Shuts the worker down and waits until it has stopped. */
  stop(): Promise<void>;
}

/**
 * A worker running the real workflows against scripted activities (the workflows' own collaborators),
 * on a task queue no other test file shares. It holds time still while an activity runs (timeSkippingLock).
 */
export async function startScriptedWorker(options: {
  temporal: TestWorkflowEnvironment;
  activities: Partial<Activities>;
  taskQueuePrefix: string;
}): Promise<ScriptedWorker> {
  const { temporal, activities, taskQueuePrefix } = options;
  const taskQueue = `${taskQueuePrefix}-${randomUUID()}`;
  const worker = await Worker.create({
    connection: temporal.nativeConnection,
    taskQueue,
    workflowsPath: WORKFLOWS_PATH,
    activities,
    interceptors: { activity: timeSkippingLock(temporal) },
  });
  const running = worker.run();
  return {
    taskQueue,
    async stop() {
      worker.shutdown();
      await running;
    },
  };
}

/** Like `npm run dev`, tests register the custom search attributes the workflows set. */
async function withSearchAttributes(environment: TestWorkflowEnvironment): Promise<TestWorkflowEnvironment> {
  await registerSearchAttributes(environment.connection, environment.namespace ?? 'default');
  return environment;
}

/**
 * The one notion of "now" that the fakes and the activities share on the time-skipping server: the
 * time the server had when it scheduled the current activity attempt, or when the test last asked it.
 * It only moves forward.
 */
export class SimulatedClock {
  private current: number;

  constructor(private readonly temporal: TestWorkflowEnvironment, startsAt: number) {
    this.current = startsAt;
  }

  static async of(temporal: TestWorkflowEnvironment): Promise<SimulatedClock> {
    return new SimulatedClock(temporal, await temporal.currentTimeMs());
  }

  /** For the fakes: milliseconds since the epoch. */
  readonly now = (): number => this.current;

  /** For the activities (injected as their clock). */
  readonly activityClock = (): Date => {
    this.current = Math.max(this.current, Context.current().info.currentAttemptScheduledTimestampMs);
    return new Date(this.current);
  };

  async catchUp(): Promise<void> {
    this.current = Math.max(this.current, await this.temporal.currentTimeMs());
  }

  /** Lets the server skip `ms` of time (timers fire, activities run), then catches up. */
  async advance(ms: number): Promise<void> {
    await this.temporal.sleep(ms);
    await this.catchUp();
  }
}

/** Activity tasks on the task queue that no worker has taken (what a backlog holds, in dispatch order). */
export async function activityBacklog(temporal: TestWorkflowEnvironment, taskQueue: string): Promise<number> {
  const { stats } = await temporal.client.workflowService.describeTaskQueue({
    namespace: temporal.client.options.namespace,
    taskQueue: { name: taskQueue },
    taskQueueType: temporalProto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    reportStats: true,
  });
  return Number(stats?.approximateBacklogCount ?? 0);
}
