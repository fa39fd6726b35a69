import { randomUUID } from 'node:crypto';
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

export const voicePlatform = z.enum(['alexa', 'google']);
export const voiceDeviceStatus = z.enum(['linked', 'unlinking', 'unlinked']);

const voiceDeviceRow = z.object({
  id: z.string().uuid(),
  platform: voicePlatform,
  userId: z.string().uuid(),
  clientId: z.string(),
  grantId: z.string().uuid(),
  status: voiceDeviceStatus,
  workflowId: z.string(),
  workflowStartedAt: z.number().nullable(),
  alexaUserId: z.string().nullable(),
  alexaRegion: z.enum(['NA', 'EU', 'FE']).nullable(),
  lwaAccessTokenExpiresAt: z.number().nullable(),
  lwaTokenVersion: z.number().int(),
  lastErrorKind: z.string().nullable(),
  lastErrorMessage: z.string().nullable(),
  unlinkReason: z.string().nullable(),
  createdAt: z.number(),
  unlinkedAt: z.number().nullable(),
});
export type VoiceDeviceRow = z.infer<typeof voiceDeviceRow>;

export const VOICE_DEVICE_COLUMNS = sql.fragment`
  id, platform, user_id AS "userId", client_id AS "clientId", grant_id AS "grantId", status, workflow_id AS "workflowId",
  workflow_started_at AS "workflowStartedAt", alexa_user_id AS "alexaUserId", alexa_region AS "alexaRegion",
  lwa_access_token_expires_at AS "lwaAccessTokenExpiresAt", lwa_token_version AS "lwaTokenVersion",
  last_error_kind AS "lastErrorKind", last_error_message AS "lastErrorMessage", unlink_reason AS "unlinkReason",
  created_at AS "createdAt", unlinked_at AS "unlinkedAt"`;

/** Same shape as workflows/voice-device-messages.ts voiceDeviceWorkflowId (db/ cannot import workflows/). */
function deviceWorkflowId(platform: string, deviceId: string): string {
  return `voice-device:${platform}:${deviceId}`;
}

/**
 * The device link of a voice grant, created on the grant's first token issue; a later issue of the
 * same grant (a relink while it lives) finds the same device. Race-safe on the grant's unique index.
 */
export async function ensureVoiceDevice(
  db: CommonQueryMethods,
  link: { platform: z.infer<typeof voicePlatform>; userId: string; clientId: string; grantId: string },
): Promise<VoiceDeviceRow> {
  const id = randomUUID();
  const inserted = await db.maybeOne(sql.type(voiceDeviceRow)`
    INSERT INTO voice_devices (id, platform, user_id, client_id, grant_id, workflow_id)
    VALUES (${id}, ${link.platform}, ${link.userId}, ${link.clientId}, ${link.grantId}, ${deviceWorkflowId(link.platform, id)})
    ON CONFLICT (grant_id) DO NOTHING
    RETURNING ${VOICE_DEVICE_COLUMNS}`);
  return inserted ?? db.one(sql.type(voiceDeviceRow)`SELECT ${VOICE_DEVICE_COLUMNS} FROM voice_devices WHERE grant_id = ${link.grantId}`);
}

export function findVoiceDevice(db: CommonQueryMethods, deviceId: string): Promise<VoiceDeviceRow | null> {
  return db.maybeOne(sql.type(voiceDeviceRow)`SELECT ${VOICE_DEVICE_COLUMNS} FROM voice_devices WHERE id = ${deviceId}`);
}

export function findVoiceDeviceByGrant(db: CommonQueryMethods, grantId: string): Promise<VoiceDeviceRow | null> {
  return db.maybeOne(sql.type(voiceDeviceRow)`SELECT ${VOICE_DEVICE_COLUMNS} FROM voice_devices WHERE grant_id = ${grantId}`);
}

export async function markVoiceDeviceWorkflowStarted(db: CommonQueryMethods, deviceId: string): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE voice_devices SET workflow_started_at = COALESCE(workflow_started_at, now()), updated_at = now() WHERE id = ${deviceId}`);
}
