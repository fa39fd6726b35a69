import type { FastifyInstance, FastifyRequest } from 'fastify';
import { requestOrigin } from '../../request-origin';
import type { VoiceCaller } from './voice-caller';

/** One audit row per voice command that reached a device: which device, which command, never what was said back. */
export async function auditVoiceCommand(app: FastifyInstance, request: FastifyRequest, caller: VoiceCaller, command: string): Promise<void> {
  await app.services.audit.record({
    action: 'VoiceCommand',
    outcome: 'success',
    actor: { type: 'client', id: caller.device.clientId },
    userId: caller.userId,
    clientId: caller.device.clientId,
    provider: caller.device.platform,
    origin: requestOrigin(request),
    details: { deviceId: caller.device.id, command },
  });
}

/**
 * The day voice commands talk about, on the authorization server's clock (the one the caller's token
 * was checked on). Properties carry no time zone yet, so "today" is the UTC date, like the
 * reservations' check-in and check-out dates.
 */
export function todayUtc(app: FastifyInstance): string {
  return app.authorizationServer.tokens.clock().toISOString().slice(0, 10);
}
