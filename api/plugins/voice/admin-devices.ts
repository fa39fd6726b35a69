import type { FastifyInstance } from 'fastify';
import { findVoiceDevice, listVoiceDevices } from '../../../db/queries/voice-devices';
import { UUID } from '../../../platform/uuid';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { requireAdminToken } from '../oauth/admin-authentication';
import { describeVoiceDevice, voiceDeviceSchema } from './device-view';
import { requestVoiceDeviceUnlink } from './unlink';

export const ADMIN_VOICE_DEVICES_PREFIX = '/api/v1/admin/voice-devices';
const MAX_LISTED = 200;

const adminDeviceSchema = {
  ...voiceDeviceSchema,
  required: [...voiceDeviceSchema.required, 'userId'],
  properties: { ...voiceDeviceSchema.properties, userId: { type: 'string' } },
} as const;

const idParamsSchema = { type: 'object', required: ['id'], properties: { id: safeString(64) } } as const;
const errorResponses = { 401: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema, 503: errorResponseSchema };

/**
 * Voice device links for operators, behind `Authorization: Bearer <ADMIN_API_TOKEN>`: list them (by
 * user or client), read one, and unlink one (the operator direction: the device workflow revokes
 * every token of the device and the platform's credentials, and ends).
 */
export default async function adminVoiceDevices(app: FastifyInstance) {
  const { db } = app.services;
  requireAdminToken(app);

  app.get<{ Querystring: { user_id?: string; client_id?: string } }>(
    ADMIN_VOICE_DEVICES_PREFIX,
    {
      schema: {
        summary: 'Voice device links, newest first',
        querystring: { type: 'object', additionalProperties: false, properties: { user_id: { type: 'string', format: 'uuid' }, client_id: safeString(200) } },
        response: { 200: { type: 'object', required: ['devices'], properties: { devices: { type: 'array', items: adminDeviceSchema } } }, 400: errorResponseSchema, ...errorResponses },
      },
    },
    async (request) => {
      const { user_id: userId, client_id: clientId } = request.query;
      const devices = await listVoiceDevices(db, { ...(userId ? { userId } : {}), ...(clientId ? { clientId } : {}) }, MAX_LISTED);
      return { devices: await Promise.all(devices.map(async (device) => ({ ...(await describeVoiceDevice(app, device)), userId: device.userId }))) };
    },
  );

  app.get<{ Params: { id: string } }>(
    `${ADMIN_VOICE_DEVICES_PREFIX}/:id`,
    { schema: { summary: 'One voice device link', params: idParamsSchema, response: { 200: adminDeviceSchema, ...errorResponses } } },
    async (request) => {
      const device = UUID.test(request.params.id) ? await findVoiceDevice(db, request.params.id) : null;
      if (!device) throw new HttpError(404, 'not_found', 'No such voice device');
      return { ...(await describeVoiceDevice(app, device)), userId: device.userId };
    },
  );

  app.delete<{ Params: { id: string } }>(
    `${ADMIN_VOICE_DEVICES_PREFIX}/:id`,
    {
      schema: {
        summary: 'Unlink a voice device (operator)',
        description: "202 while the device workflow revokes every token of the device and the platform's credentials; 409 `already_unlinked` when there is nothing left to do.",
        params: idParamsSchema,
        response: {
          202: { type: 'object', required: ['deviceId', 'status'], properties: { deviceId: { type: 'string' }, status: { type: 'string', enum: ['unlinking'] } } },
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const device = UUID.test(request.params.id) ? await findVoiceDevice(db, request.params.id) : null;
      if (!device) throw new HttpError(404, 'not_found', 'No such voice device');
      const outcome = await requestVoiceDeviceUnlink(app.services, device, { direction: 'operator', requestedBy: { type: 'operator', id: 'admin-api' }, origin: requestOrigin(request) });
      if (outcome === 'already_unlinked') throw new HttpError(409, 'already_unlinked', 'The voice device is already unlinked');
      return reply.code(202).send({ deviceId: device.id, status: 'unlinking' });
    },
  );
}
