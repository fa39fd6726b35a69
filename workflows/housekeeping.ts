import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { HousekeepingCounts } from '../db/queries/housekeeping';

const { deleteExpiredRecords } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '10 seconds', maximumInterval: '5 minutes', maximumAttempts: 10 },
});

/** One housekeeping run, started by the hourly `housekeeping` schedule: expired rows go. Its result says how many. */
export async function housekeepingWorkflow(): Promise<HousekeepingCounts> {
  return deleteExpiredRecords();
}
