import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { voiceDeviceStatus, voicePlatform } from './voice-devices';

const operatorDeviceRow = z.object({
  id: z.string().uuid(),
  platform: voicePlatform,
  userId: z.string().uuid(),
  userEmail: z.string(),
  clientId: z.string(),
  status: voiceDeviceStatus,
  workflowId: z.string(),
  createdAt: z.number(),
  /** When the link ends unless the platform uses it again: the newest expiry of its live refresh tokens. */
  linkExpiresAt: z.number().nullable(),
  alexaEventsPermitted: z.boolean(),
  lastErrorKind: z.string().nullable(),
  lastErrorMessage: z.string().nullable(),
  unlinkReason: z.string().nullable(),
  unlinkedAt: z.number().nullable(),
});
export type OperatorVoiceDeviceRow = z.infer<typeof operatorDeviceRow>;

export interface VoiceDeviceFilters {
  userEmail?: string;
  platform?: z.infer<typeof voicePlatform>;
  status?: z.infer<typeof voiceDeviceStatus>;
}

/** Every device link for operators (`npm run admin -- voice-devices list`), newest first, with its user's email. */
export function listVoiceDevicesForOperators(db: CommonQueryMethods, filters: VoiceDeviceFilters): Promise<readonly OperatorVoiceDeviceRow[]> {
  const conditions = [
    sql.fragment`TRUE`,
    ...(filters.userEmail === undefined ? [] : [sql.fragment`u.email = ${filters.userEmail}`]),
    ...(filters.platform === undefined ? [] : [sql.fragment`d.platform = ${filters.platform}`]),
    ...(filters.status === undefined ? [] : [sql.fragment`d.status = ${filters.status}`]),
  ];
  return db.any(sql.type(operatorDeviceRow)`
    SELECT d.id, d.platform, d.user_id AS "userId", u.email::text AS "userEmail", d.client_id AS "clientId", d.status,
           d.workflow_id AS "workflowId", d.created_at AS "createdAt",
           (SELECT max(t.expires_at) FROM oauth_refresh_tokens t JOIN oauth_grants g ON g.id = t.grant_id
            WHERE t.grant_id = d.grant_id AND t.revoked_at IS NULL AND g.revoked_at IS NULL) AS "linkExpiresAt",
           d.lwa_refresh_token_enc IS NOT NULL AS "alexaEventsPermitted",
           d.last_error_kind AS "lastErrorKind", d.last_error_message AS "lastErrorMessage",
           d.unlink_reason AS "unlinkReason", d.unlinked_at AS "unlinkedAt"
    FROM voice_devices d JOIN users u ON u.id = d.user_id
    WHERE ${sql.join(conditions, sql.fragment` AND `)}
    ORDER BY d.created_at DESC, d.id`);
}
