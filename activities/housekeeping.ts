import { deleteExpiredRecords, type HousekeepingCounts } from '../db/queries/housekeeping';
import type { ActivityDependencies } from './dependencies';

export function createHousekeepingActivities({ db }: Pick<ActivityDependencies, 'db'>) {
  return {
    /** Idempotent: a retry deletes whatever the first attempt did not get to. */
    async deleteExpiredRecords(): Promise<HousekeepingCounts> {
      return deleteExpiredRecords(db);
    },
  };
}
