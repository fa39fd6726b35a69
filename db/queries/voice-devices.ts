import { randomUUID } from 'node:crypto';
import { sql, type CommonQueryMethods, type IdentifierSqlToken } from 'slonik';
import { z } from 'zod';

export const voicePlatform = z.enum(['alexa', 'google']);
export const voiceDeviceStatus = z.enum(['linked', 'unlinking', 'unlinked']);
/** The Alexa region whose event gateway takes the device's events. */
export const alexaRegion = z.enum(['NA', 'EU', 'FE']);
export type AlexaRegionName = z.infer<typeof alexaRegion>;

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
  alexaRegion: alexaRegion.nullable(),
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

/** The user's device links, newest first, unlinked ones included (the PM app shows their history). */
export function listUserVoiceDevices(db: CommonQueryMethods, userId: string): Promise<readonly VoiceDeviceRow[]> {
  return db.any(sql.type(voiceDeviceRow)`
    SELECT ${VOICE_DEVICE_COLUMNS} FROM voice_devices WHERE user_id = ${userId} ORDER BY created_at DESC, id`);
}

/** The user's newest linked device of a platform. */
export function findLinkedUserVoiceDevice(db: CommonQueryMethods, userId: string, platform: z.infer<typeof voicePlatform>): Promise<VoiceDeviceRow | null> {
  return db.maybeOne(sql.type(voiceDeviceRow)`
    SELECT ${VOICE_DEVICE_COLUMNS} FROM voice_devices
    WHERE user_id = ${userId} AND platform = ${platform} AND status = 'linked' ORDER BY created_at DESC, id LIMIT 1`);
}

/** Linked devices an Alexa skill user id names (skill events such as SkillDisabled carry only that id). */
export function findLinkedAlexaUserDevices(db: CommonQueryMethods, alexaUserId: string): Promise<readonly VoiceDeviceRow[]> {
  return db.any(sql.type(voiceDeviceRow)`
    SELECT ${VOICE_DEVICE_COLUMNS} FROM voice_devices WHERE alexa_user_id = ${alexaUserId} AND status = 'linked' ORDER BY created_at, id`);
}

/** The devices of a client that are not unlinked yet (revoking the client unlinks each). */
export function listUnfinishedClientVoiceDevices(db: CommonQueryMethods, clientId: string): Promise<readonly VoiceDeviceRow[]> {
  return db.any(sql.type(voiceDeviceRow)`
    SELECT ${VOICE_DEVICE_COLUMNS} FROM voice_devices WHERE client_id = ${clientId} AND status <> 'unlinked' ORDER BY created_at, id`);
}

/** Records the skill user id (and event-gateway region, when known) Alexa's requests name for a linked device. */
export async function recordAlexaUser(db: CommonQueryMethods, deviceId: string, alexaUserId: string, region: AlexaRegionName | null): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE voice_devices SET alexa_user_id = ${alexaUserId}, alexa_region = COALESCE(${region}, alexa_region), updated_at = now()
    WHERE id = ${deviceId} AND status = 'linked'
      AND (alexa_user_id IS DISTINCT FROM ${alexaUserId} OR (${region}::text IS NOT NULL AND alexa_region IS DISTINCT FROM ${region}))`);
}

/** Whether Alexa's permission grant (AcceptGrant) gave the device Login with Amazon tokens for the event gateway. */
export function alexaEventsPermitted(device: Pick<VoiceDeviceRow, 'platform' | 'lwaAccessTokenExpiresAt'>): boolean {
  return device.platform === 'alexa' && device.lwaAccessTokenExpiresAt !== null;
}

const listedVoiceDeviceRow = voiceDeviceRow.extend({
  userEmail: z.string(),
  /** When the link ends unless the platform uses it again (latestRefreshTokenExpiry). */
  linkExpiresAt: z.number().nullable(),
});
export type ListedVoiceDeviceRow = z.infer<typeof listedVoiceDeviceRow>;

export interface VoiceDeviceFilters {
  userId?: string;
  userEmail?: string;
  clientId?: string;
  platform?: z.infer<typeof voicePlatform>;
  status?: z.infer<typeof voiceDeviceStatus>;
}

/** Device links for operators (admin API, `npm run admin -- voice-devices list`), newest first, with their user's email. */
export function listVoiceDevices(db: CommonQueryMethods, filters: VoiceDeviceFilters, limit?: number): Promise<readonly ListedVoiceDeviceRow[]> {
  const conditions = [
    sql.fragment`TRUE`,
    ...(filters.userId === undefined ? [] : [sql.fragment`d."userId" = ${filters.userId}`]),
    ...(filters.userEmail === undefined ? [] : [sql.fragment`u.email = ${filters.userEmail}`]),
    ...(filters.clientId === undefined ? [] : [sql.fragment`d."clientId" = ${filters.clientId}`]),
    ...(filters.platform === undefined ? [] : [sql.fragment`d.platform = ${filters.platform}`]),
    ...(filters.status === undefined ? [] : [sql.fragment`d.status = ${filters.status}`]),
  ];
  return db.any(sql.type(listedVoiceDeviceRow)`
    SELECT d.*, u.email::text AS "userEmail", ${latestRefreshTokenExpirySql(sql.identifier(['d', 'grantId']))} AS "linkExpiresAt"
    FROM (SELECT ${VOICE_DEVICE_COLUMNS} FROM voice_devices) d JOIN users u ON u.id = d."userId"
    WHERE ${sql.join(conditions, sql.fragment` AND `)}
    ORDER BY d."createdAt" DESC, d.id ${limit === undefined ? sql.fragment`` : sql.fragment`LIMIT ${limit}`}`);
}

/**
 * Leaves an AcceptGrant code (an IntegrationCrypto envelope bound to this row and column) for the
 * device workflow to exchange, with the region whose gateway the permission is for when the caller
 * knows it. False when the device is no longer linked.
 */
export async function storeLwaGrantCode(db: CommonQueryMethods, deviceId: string, codeEnc: string, region: AlexaRegionName | null = null): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE voice_devices SET lwa_grant_code_enc = ${codeEnc}, alexa_region = COALESCE(${region}, alexa_region), updated_at = now()
    WHERE id = ${deviceId} AND status = 'linked'`);
  return result.rowCount === 1;
}

const voiceDeviceSecretsRow = z.object({
  status: voiceDeviceStatus,
  platform: voicePlatform,
  userId: z.string().uuid(),
  grantId: z.string().uuid(),
  alexaRegion: alexaRegion.nullable(),
  lwaGrantCodeEnc: z.string().nullable(),
  lwaExchangedTokensEnc: z.string().nullable(),
  lwaAccessTokenEnc: z.string().nullable(),
  lwaRefreshTokenEnc: z.string().nullable(),
  lwaAccessTokenExpiresAt: z.number().nullable(),
  lwaTokenVersion: z.number().int(),
  agentUserDeletedAt: z.number().nullable(),
});
export type VoiceDeviceSecretsRow = z.infer<typeof voiceDeviceSecretsRow>;

/** The device's encrypted Login with Amazon material and what decides whether to use it; for activities only. */
export function readVoiceDeviceSecrets(db: CommonQueryMethods, deviceId: string): Promise<VoiceDeviceSecretsRow | null> {
  return db.maybeOne(sql.type(voiceDeviceSecretsRow)`
    SELECT status, platform, user_id AS "userId", grant_id AS "grantId", alexa_region AS "alexaRegion",
           lwa_grant_code_enc AS "lwaGrantCodeEnc", lwa_exchanged_tokens_enc AS "lwaExchangedTokensEnc", lwa_access_token_enc AS "lwaAccessTokenEnc", lwa_refresh_token_enc AS "lwaRefreshTokenEnc",
           lwa_access_token_expires_at AS "lwaAccessTokenExpiresAt", lwa_token_version AS "lwaTokenVersion",
           agent_user_deleted_at AS "agentUserDeletedAt"
    FROM voice_devices WHERE id = ${deviceId}`);
}

/**
 * Keeps what Login with Amazon answered for the waiting AcceptGrant code `spentCodeEnc` (as read) in
 * place of that code, which is spent now. False when the code was replaced or the device unlinked meanwhile.
 */
export async function stageExchangedLwaTokens(db: CommonQueryMethods, deviceId: string, spentCodeEnc: string, exchangedTokensEnc: string): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE voice_devices SET lwa_exchanged_tokens_enc = ${exchangedTokensEnc}, lwa_grant_code_enc = NULL, updated_at = now()
    WHERE id = ${deviceId} AND status = 'linked' AND lwa_grant_code_enc = ${spentCodeEnc}`);
  return result.rowCount === 1;
}

export interface StoredLwaTokens {
  accessTokenEnc: string;
  refreshTokenEnc: string;
  accessTokenExpiresAt: Date;
  refreshedAt: Date;
}

/**
 * Stores Login with Amazon tokens if the device is linked and its token version is still
 * `expectedVersion` (compare-and-set), and consumes the AcceptGrant code or staged exchange answer they
 * came from (`consumedEnc`, as read: a newer code stored meanwhile stays). Answers the new version, or
 * null when another writer came first.
 */
export function storeLwaTokensIfVersion(
  db: CommonQueryMethods,
  deviceId: string,
  expectedVersion: number,
  tokens: StoredLwaTokens,
  consumedEnc: string | null,
): Promise<number | null> {
  return db.maybeOneFirst(sql.type(z.object({ version: z.number().int() }))`
    UPDATE voice_devices SET
      lwa_access_token_enc = ${tokens.accessTokenEnc}, lwa_refresh_token_enc = ${tokens.refreshTokenEnc},
      lwa_access_token_expires_at = ${sql.timestamp(tokens.accessTokenExpiresAt)}, lwa_refreshed_at = ${sql.timestamp(tokens.refreshedAt)},
      lwa_token_version = lwa_token_version + 1,
      lwa_grant_code_enc = CASE WHEN lwa_grant_code_enc = ${consumedEnc} THEN NULL ELSE lwa_grant_code_enc END,
      lwa_exchanged_tokens_enc = CASE WHEN lwa_exchanged_tokens_enc = ${consumedEnc} THEN NULL ELSE lwa_exchanged_tokens_enc END,
      last_error_kind = NULL, last_error_message = NULL, updated_at = now()
    WHERE id = ${deviceId} AND status = 'linked' AND lwa_token_version = ${expectedVersion}
    RETURNING lwa_token_version AS version`);
}

/** Drops an AcceptGrant code that cannot be exchanged any more (refused, or out of time); only `sealed` when given. */
export async function discardAlexaGrantCode(db: CommonQueryMethods, deviceId: string, sealed?: string): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE voice_devices SET lwa_grant_code_enc = NULL, updated_at = now()
    WHERE id = ${deviceId} AND lwa_grant_code_enc IS NOT NULL ${sealed === undefined ? sql.fragment`` : sql.fragment`AND lwa_grant_code_enc = ${sealed}`}`);
}

/** The last failure of the device's own work (LWA, the event gateway, Home Graph), for operators and the API. */
export async function recordVoiceDeviceError(db: CommonQueryMethods, deviceId: string, error: { kind: string; message: string }): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE voice_devices SET last_error_kind = ${error.kind}, last_error_message = ${error.message}, updated_at = now() WHERE id = ${deviceId}`);
}

/**
 * When the device's grant ends unless the platform uses it again: the newest expiry among its
 * refresh tokens that are not revoked (null when there is none, or the grant itself is revoked).
 */
export function latestRefreshTokenExpiry(db: CommonQueryMethods, grantId: string): Promise<number | null> {
  return db.oneFirst(sql.type(z.object({ expiresAt: z.number().nullable() }))`SELECT ${latestRefreshTokenExpirySql(grantId)} AS "expiresAt"`);
}

function latestRefreshTokenExpirySql(grantId: string | IdentifierSqlToken) {
  return sql.fragment`(
    SELECT max(t.expires_at) FROM oauth_refresh_tokens t JOIN oauth_grants g ON g.id = t.grant_id
    WHERE t.grant_id = ${grantId} AND t.revoked_at IS NULL AND g.revoked_at IS NULL)`;
}

/**
 * Locks the device row and ends its platform credentials: the LWA tokens and any waiting grant
 * code are wiped, the version moves on (so an LWA refresh in flight loses its compare-and-set), and
 * the status becomes `to`. Answers the status it had, so that only the call that made the move audits.
 */
export async function endVoiceDeviceLink(
  db: CommonQueryMethods,
  deviceId: string,
  change: { to: 'unlinking' | 'unlinked'; reason: string; at: Date },
): Promise<z.infer<typeof voiceDeviceStatus> | null> {
  const previous = await db.maybeOneFirst(sql.type(z.object({ status: voiceDeviceStatus }))`
    SELECT status FROM voice_devices WHERE id = ${deviceId} FOR UPDATE`);
  if (previous !== 'linked') return previous;
  await db.query(sql.unsafe`
    UPDATE voice_devices SET
      status = ${change.to}, unlink_reason = ${change.reason},
      unlinked_at = ${change.to === 'unlinked' ? sql.timestamp(change.at) : null},
      lwa_grant_code_enc = NULL, lwa_exchanged_tokens_enc = NULL, lwa_access_token_enc = NULL, lwa_refresh_token_enc = NULL, lwa_access_token_expires_at = NULL,
      lwa_token_version = lwa_token_version + 1, updated_at = now()
    WHERE id = ${deviceId}`);
  return previous;
}

/** Google's last unlink step: Home Graph no longer knows the agent user. Answers false when it was recorded already. */
export async function markAgentUserDeleted(db: CommonQueryMethods, deviceId: string, at: Date): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE voice_devices SET agent_user_deleted_at = ${sql.timestamp(at)}, updated_at = now()
    WHERE id = ${deviceId} AND agent_user_deleted_at IS NULL`);
  return result.rowCount === 1;
}

/** The end of an unlink that had platform work left (`unlinking`): nothing of the link is left anywhere. */
export async function finishVoiceDeviceUnlink(db: CommonQueryMethods, deviceId: string, at: Date): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE voice_devices SET status = 'unlinked', unlinked_at = ${sql.timestamp(at)}, updated_at = now()
    WHERE id = ${deviceId} AND status = 'unlinking'`);
}
