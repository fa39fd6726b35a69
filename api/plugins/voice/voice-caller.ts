import type { FastifyInstance } from 'fastify';
import { findClient } from '../../../db/queries/oauth-clients';
import { findVoiceDeviceByGrant, type VoiceDeviceRow } from '../../../db/queries/voice-devices';
import { findToken, isLive } from '../../../platform/oauth-server/introspection';
import type { VoicePlatform } from '../../../workflows/voice-device-messages';

/** Who a voice platform's request speaks for: a linked device, its user, and what the token allows. */
export interface VoiceCaller {
  device: VoiceDeviceRow;
  userId: string;
  scopes: string[];
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set once a voice request is authenticated: the device it reached (the voice command limits are keyed on it). */
    voiceCaller: VoiceCaller | null;
  }
}

/**
 * The linked device behind one of our access tokens, when the token is live (signature, issuer,
 * audience, expiry, and its row, grant and client not revoked: read from the database on every
 * request, so an unlink is seen at once), was issued to a voice client of `platform`, and its
 * grant's device is still linked. Null for anything else. A database fault is thrown, never
 * answered as an invalid token: platforms unlink users on a 401.
 */
export async function authenticateVoiceCaller(app: FastifyInstance, token: string | undefined, platform: VoicePlatform): Promise<VoiceCaller | null> {
  if (!token) return null;
  const { db } = app.services;
  const { tokens } = app.authorizationServer;
  const found = await findToken(db, tokens, token, 'access_token');
  // The same clock the token's signature and expiry were just verified on.
  if (found?.kind !== 'access_token' || !isLive(found, tokens.clock()) || found.row.grantId === null || found.row.userId === null) return null;
  const client = await findClient(db, found.row.clientId);
  if (client?.kind !== 'voice' || client.voicePlatform !== platform) return null;
  const device = await findVoiceDeviceByGrant(db, found.row.grantId);
  if (device?.status !== 'linked' || device.platform !== platform) return null;
  return { device, userId: found.row.userId, scopes: found.row.scopes };
}

/** `Authorization: Bearer <token>` (scheme case-insensitive), or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  return header?.match(/^Bearer +(\S+) *$/i)?.[1];
}
