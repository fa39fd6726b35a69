import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { housekeepingWorkflow } from '../workflows/housekeeping';

export const HOUSEKEEPING_SCHEDULE_ID = 'housekeeping';

/**
 * The hourly housekeeping schedule. Every worker ensures it at start; the first one creates it and
 * the rest find it there. Operators see it under Schedules in Temporal Web.
 */
export async function ensureHousekeepingSchedule(client: Client, taskQueue: string): Promise<void> {
  try {
    await client.schedule.create<typeof housekeepingWorkflow>({
      scheduleId: HOUSEKEEPING_SCHEDULE_ID,
      spec: { intervals: [{ every: '1 hour' }] },
      action: { type: 'startWorkflow', workflowType: 'housekeepingWorkflow', workflowId: 'housekeeping', taskQueue, args: [] },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
    });
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
  }
}
