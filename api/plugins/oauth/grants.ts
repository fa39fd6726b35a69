import type { FastifyInstance } from 'fastify';
import { findGrant, listUserGrants, markGrantRevoked } from '../../../db/queries/oauth-grants';
import { revokeGrantTokens } from '../../../db/queries/oauth-tokens';
import { findVoiceDeviceByGrant } from '../../../db/queries/voice-devices';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { endVoiceDeviceLinkNow } from '../../../platform/oauth-server/voice-device-unlink';
import { UUID } from '../../../platform/uuid';
import { requestVoiceDeviceUnlink } from '../voice/unlink';

const grantSchema = {
  type: 'object',
  required: ['id', 'clientId', 'clientName', 'scopes', 'createdAt', 'lastUsedAt'],
  properties: {
    id: { type: 'string' },
    clientId: { type: 'string' },
    clientName: { type: 'string' },
    scopes: { type: 'array', items: { type: 'string' } },
    // When the user first consented.
    createdAt: { type: 'string', format: 'date-time' },
    // The last time tokens were issued under the grant; null until the client first redeems a code.
    lastUsedAt: { type: ['string', 'null'], format: 'date-time' },
  },
} as const;

/**
 * The signed-in user's own view of the apps they authorized (session cookie or Bearer session token),
 * and the way to take an authorization back: revoking a grant revokes every token issued under it
 * (and unlinks the voice device of a voice platform's grant: our side in the same transaction, the
 * platform's side by the device workflow, told after commit).
 */
export default async function grants(app: FastifyInstance) {
  const { db, audit } = app.services;
  const { authorizationServer } = app;

  app.addHook('onSend', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
  });

  app.get(
    '/oauth/grants',
    {
      preHandler: app.authenticate,
      schema: {
        response: {
          200: { type: 'object', required: ['grants'], properties: { grants: { type: 'array', items: grantSchema } } },
          401: errorResponseSchema,
        },
      },
    },
    async (request) => {
      const rows = await listUserGrants(db, request.user!.id);
      return {
        grants: rows.map((grant) => ({
          id: grant.id,
          clientId: grant.clientId,
          clientName: grant.clientName,
          scopes: grant.scopes,
          createdAt: new Date(grant.createdAt).toISOString(),
          lastUsedAt: grant.lastUsedAt === null ? null : new Date(grant.lastUsedAt).toISOString(),
        })),
      };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/oauth/grants/:id',
    {
      preHandler: app.authenticate,
      schema: {
        params: { type: 'object', required: ['id'], properties: { id: safeString(64) } },
        response: { 204: { type: 'null' }, 401: errorResponseSchema, 404: errorResponseSchema },
      },
    },
    async (request, reply) => {
      const user = request.user!;
      const notFound = new HttpError(404, 'not_found', 'No such grant');
      // Someone else's grant looks exactly like one that does not exist.
      if (!UUID.test(request.params.id)) throw notFound;
      const grant = await findGrant(db, request.params.id);
      if (!grant || grant.userId !== user.id) throw notFound;
      const unlink = { direction: 'grant_revoked', requestedBy: { type: 'user', id: user.id }, origin: requestOrigin(request) } as const;
      // A voice platform's grant is a device link: its workflow ends the platform's side and finishes.
      const device = await findVoiceDeviceByGrant(db, grant.id);
      if (grant.revokedAt !== null) {
        // Revoked before, and the device's workflow may never have been told: it is told again until the device is unlinked.
        if (!device || device.status === 'unlinked') throw notFound;
        await requestVoiceDeviceUnlink(app.services, device, unlink);
        return reply.code(204).send();
      }
      const revoked = await db.transaction(async (transaction) => {
        if (!(await markGrantRevoked(transaction, grant.id))) return false;
        await revokeGrantTokens(transaction, grant.id, 'grant revoked by the user');
        await audit.record(
          {
            action: 'OAuthGrantRevoke',
            outcome: 'success',
            actor: { type: 'user', id: user.id },
            userId: user.id,
            clientId: grant.clientId,
            origin: unlink.origin,
            details: { grantId: grant.id, scopes: grant.scopes },
          },
          transaction,
        );
        if (device) await endVoiceDeviceLinkNow(transaction, audit, device, unlink, authorizationServer.tokens.clock());
        return true;
      });
      if (!revoked) throw notFound;
      if (device) {
        try {
          await requestVoiceDeviceUnlink(app.services, device, unlink);
        } catch (error) {
          // The grant and the device's tokens are revoked: what is left is the platform's side, which a second DELETE asks for again.
          request.log.warn({ err: error, deviceId: device.id }, 'the voice device workflow could not be told of the revoked grant');
        }
      }
      return reply.code(204).send();
    },
  );
}
