import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import type { VoiceCaller } from './voice-caller';

const WINDOW_MS = 60_000;

export interface VoiceCommandLimits {
  /**
   * Counts one command of the request's caller against its device's and its user's budget for the
   * minute; over either, answers 429 with Retry-After. Never keyed on the caller's address: Alexa and
   * Google call from a few shared addresses for every user.
   */
  admit(request: FastifyRequest, reply: FastifyReply, caller: VoiceCaller): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    voiceCommandLimits: VoiceCommandLimits;
  }
}

/** The 429 of a voice command over its limit, for the routes' response schemas. */
export const rateLimitedResponse = { 429: errorResponseSchema } as const;

/**
 * Voice command limits shared by every voice endpoint (Alexa skill, smart-home relay, Google
 * fulfillment): VOICE_COMMANDS_PER_MINUTE_PER_DEVICE and VOICE_COMMANDS_PER_MINUTE_PER_USER, counted
 * by @fastify/rate-limit in this process. The first refusal of a device or user in a window is
 * audited; the rest of that window's refusals are not, so a burst cannot flood the audit log.
 */
export default fp(async function voiceCommandLimits(app: FastifyInstance) {
  const { config, audit } = app.services;
  app.decorateRequest('voiceCaller', null);

  const limiter = (scope: 'device' | 'user', max: number) =>
    app.createRateLimit({
      max,
      timeWindow: WINDOW_MS,
      keyGenerator: (request) => (scope === 'device' ? `voice-device:${request.voiceCaller!.device.id}` : `voice-user:${request.voiceCaller!.userId}`),
    });
  const perDevice = limiter('device', config.voice.commandsPerMinutePerDevice);
  const perUser = limiter('user', config.voice.commandsPerMinutePerUser);
  // One audit row per refused device (or user) and window.
  const refusalAudits = { device: limiter('device', 1), user: limiter('user', 1) };

  async function refuse(request: FastifyRequest, reply: FastifyReply, caller: VoiceCaller, scope: 'device' | 'user', limit: { max: number; ttlInSeconds: number }): Promise<never> {
    const retryAfter = Math.max(1, limit.ttlInSeconds);
    const firstInWindow = await refusalAudits[scope](request);
    if (firstInWindow.isAllowed || !firstInWindow.isExceeded) {
      await audit.record({
        action: 'VoiceCommandRateLimited',
        outcome: 'failure',
        actor: { type: 'client', id: caller.device.clientId },
        userId: caller.userId,
        clientId: caller.device.clientId,
        provider: caller.device.platform,
        origin: requestOrigin(request),
        details: { deviceId: caller.device.id, limit: scope, maxPerMinute: limit.max, retryAfterSeconds: retryAfter },
      });
    }
    reply.header('retry-after', String(retryAfter));
    throw new HttpError(429, 'rate_limited', `Too many voice commands for this ${scope}; retry in ${retryAfter} s`);
  }

  app.decorate('voiceCommandLimits', {
    async admit(request, reply, caller) {
      request.voiceCaller = caller;
      const device = await perDevice(request);
      if (!device.isAllowed && device.isExceeded) await refuse(request, reply, caller, 'device', device);
      const user = await perUser(request);
      if (!user.isAllowed && user.isExceeded) await refuse(request, reply, caller, 'user', user);
    },
  } satisfies VoiceCommandLimits);
});
