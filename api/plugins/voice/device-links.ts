import type { FastifyInstance } from 'fastify';
import { alexaRegion, findLinkedUserVoiceDevice, findVoiceDevice, listUserVoiceDevices, type AlexaRegionName } from '../../../db/queries/voice-devices';
import { UUID } from '../../../platform/uuid';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { acceptAlexaGrant, acceptGrantRefusal } from './accept-grant';
import { describeVoiceDevice, voiceDeviceSchema } from './device-view';
import { requestVoiceDeviceUnlink } from './unlink';

export const VOICE_DEVICES_PATH = '/api/v1/ai/voice-devices';

/**
 * The signed-in user's voice device links (PM session cookie or Bearer session token): list them, give Alexa permission to receive events (the app side of
 * AcceptGrant), and unlink one.
 */
export default async function voiceDeviceLinks(app: FastifyInstance) {
  const { db } = app.services;

  app.addHook('preHandler', app.authenticate);

  app.get(
    VOICE_DEVICES_PATH,
    {
      schema: {
        summary: "The signed-in user's voice device links",
        description: 'Every Alexa and Google link of the user, newest first, with its status, link and unlink times, last error, and the device workflow\'s own view while it runs.',
        response: { 200: { type: 'object', required: ['devices'], properties: { devices: { type: 'array', items: voiceDeviceSchema } } }, 401: errorResponseSchema },
      },
    },
    async (request) => {
      const devices = await listUserVoiceDevices(db, request.user!.id);
      return { devices: await Promise.all(devices.map((device) => describeVoiceDevice(app, device))) };
    },
  );

  app.post<{ Body: { platform: 'alexa'; code: string; region?: AlexaRegionName } }>(
    `${VOICE_DEVICES_PATH}/link`,
    {
      schema: {
        summary: 'Give Alexa permission to receive events for the linked device (link_voice_device)',
        description:
          '`code` is an Alexa permission authorization code issued by Login with Amazon for the skill (what an `Alexa.Authorization.AcceptGrant` directive carries), ' +
          "for the user's linked Alexa device: the app-side AcceptGrant. The device workflow exchanges it at Login with Amazon at once and keeps the tokens " +
          "refreshed for the Alexa event gateway of `region` (NA, EU or FE: the user's Alexa region; when absent, the one Alexa's requests named, else NA). " +
          "200 with the device; 404 `no_linked_device` when the user has no linked Alexa device; 400 `invalid_grant` when " +
          'Login with Amazon refused the code (expired, used, or not for this skill); 503 when Login with Amazon is not configured on this server or cannot be reached.',
        body: {
          type: 'object',
          required: ['platform', 'code'],
          additionalProperties: false,
          properties: { platform: { type: 'string', enum: ['alexa'] }, code: safeString(2048, { minLength: 1 }), region: { type: 'string', enum: alexaRegion.options } },
        },
        response: { 200: voiceDeviceSchema, 400: errorResponseSchema, 401: errorResponseSchema, 404: errorResponseSchema, 503: errorResponseSchema },
      },
    },
    async (request) => {
      const user = request.user!;
      const device = await findLinkedUserVoiceDevice(db, user.id, request.body.platform);
      if (!device) throw new HttpError(404, 'no_linked_device', 'You have no linked Alexa device; enable the skill and link your account in the Alexa app first');
      // The device workflow audits the exchange's outcome (VoiceAcceptGrant).
      const result = await acceptAlexaGrant(app.services, device, request.body.code, request.body.region ?? null);
      if (!result.accepted) throw acceptGrantRefusal(result.reason);
      return describeVoiceDevice(app, (await findVoiceDevice(db, device.id))!);
    },
  );

  app.delete<{ Params: { id: string } }>(
    `${VOICE_DEVICES_PATH}/:id`,
    {
      schema: {
        summary: 'Unlink a voice device',
        description: "The device workflow revokes every token of the device (ours and the platform's), deletes Google's agent user or Alexa's event permission, and ends. 202 while it does.",
        params: { type: 'object', required: ['id'], properties: { id: safeString(64) } },
        response: {
          202: { type: 'object', required: ['deviceId', 'status'], properties: { deviceId: { type: 'string' }, status: { type: 'string', enum: ['unlinking'] } } },
          401: errorResponseSchema,
          404: errorResponseSchema,
        },
      },
    },
    async (request, reply) => {
      const user = request.user!;
      // Someone else's device looks exactly like one that does not exist.
      const device = UUID.test(request.params.id) ? await findVoiceDevice(db, request.params.id) : null;
      if (!device || device.userId !== user.id || device.status === 'unlinked') throw new HttpError(404, 'not_linked', 'There is no such linked voice device');
      await requestVoiceDeviceUnlink(app.services, device, { direction: 'user', requestedBy: { type: 'user', id: user.id }, origin: requestOrigin(request) });
      return reply.code(202).send({ deviceId: device.id, status: 'unlinking' });
    },
  );
}
