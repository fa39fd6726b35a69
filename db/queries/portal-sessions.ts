import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/** Live portal sessions that began with SSO from one of these PM sessions. */
export function livePortalSessionsOfPmSessions(db: CommonQueryMethods, pmSessionIds: readonly string[]): Promise<readonly string[]> {
  if (pmSessionIds.length === 0) return Promise.resolve([]);
  return db.anyFirst(sql.type(z.object({ id: z.string() }))`
    SELECT id FROM portal_sessions WHERE pm_session_id = ANY(${sql.array([...pmSessionIds], 'uuid')}) AND ended_at IS NULL`);
}

/** Live SSO portal sessions of the portal account linked to this PM user. */
export function livePortalSessionsOfPmUser(db: CommonQueryMethods, pmUserId: string): Promise<readonly string[]> {
  return db.anyFirst(sql.type(z.object({ id: z.string() }))`
    SELECT ps.id FROM portal_sessions ps JOIN portal_users pu ON pu.id = ps.portal_user_id
    WHERE pu.pm_user_id = ${pmUserId} AND ps.ended_at IS NULL AND ps.pm_session_id IS NOT NULL`);
}
