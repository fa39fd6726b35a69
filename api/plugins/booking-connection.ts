import type { FastifyInstance } from 'fastify';
import { findOrCreateLiveConnection, storeMachineAccountCredentials } from '../../db/queries/connections';
import { addHotelMappings } from '../../db/queries/hotel-mappings';
import { connectionColumn } from '../../db/encrypted-columns';
import { serializeBookingCredentials } from '../../platform/providers/booking';
import { ProviderError } from '../../platform/providers/provider-error';
import type { MachineAccountAdapter } from '../../platform/providers/provider';
import type { connectionWorkflow } from '../../workflows/connection';
import { credentialsStoredSignal } from '../../workflows/connection-messages';
import { errorResponseSchema, HttpError } from '../errors';
import { requestOrigin } from '../request-origin';
import { connectionWorkflowInput } from './connection-workflow';

const PROVIDER = 'booking-com';

interface ConnectBody {
  clientId: string;
  clientSecret: string;
  hotelIds?: string[];
}

/**
 * Booking.com has no OAuth: the user hands over a machine account's credentials. They are tried
 * against Booking.com first, so a typo is answered at once and nothing is stored; good ones are
 * stored encrypted and the connection's workflow takes over (first token, refreshes, polling).
 * Status and disconnect are the shared endpoints of connection-status.ts.
 */
export default async function bookingConnectionRoutes(app: FastifyInstance) {
  const { db, crypto, audit, config, temporal, providers } = app.services;

  function adapter(): MachineAccountAdapter {
    const configured = providers[PROVIDER];
    if (!configured || configured.kind !== 'machine-account') throw new HttpError(503, 'provider_not_configured', 'Booking.com is not configured on this server');
    return configured;
  }

  app.addHook('preHandler', app.authenticate);

  app.post<{ Body: ConnectBody }>(
    '/connect',
    {
      // Every attempt spends one of the machine account's 30 tokens an hour at Booking.com.
      config: { rateLimit: { max: 10, timeWindow: '1 hour', hook: 'preHandler', keyGenerator: (request) => request.user?.id ?? request.ip } },
      schema: {
        body: {
          type: 'object',
          required: ['clientId', 'clientSecret'],
          additionalProperties: false,
          properties: {
            clientId: { type: 'string', minLength: 1, maxLength: 256 },
            clientSecret: { type: 'string', minLength: 1, maxLength: 1024 },
            hotelIds: {
              type: 'array',
              maxItems: 500,
              uniqueItems: true,
              description: 'Booking.com hotel ids this account manages; each becomes a listing mapping to review',
              items: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' },
            },
          },
        },
        response: {
          202: {
            type: 'object',
            required: ['connectionId', 'status', 'workflowId'],
            properties: { connectionId: { type: 'string' }, status: { type: 'string' }, workflowId: { type: 'string' } },
          },
          '4xx': errorResponseSchema,
          '5xx': errorResponseSchema,
        },
      },
    },
    async (request, reply) => {
      const user = request.user!;
      const { clientId, clientSecret, hotelIds = [] } = request.body;
      const credentials = serializeBookingCredentials({ clientId, clientSecret });
      const auditEntry = { actor: { type: 'user', id: user.id }, userId: user.id, provider: PROVIDER, origin: requestOrigin(request) } as const;

      try {
        await adapter().refresh(credentials);
      } catch (error) {
        if (!(error instanceof ProviderError)) throw error;
        await audit.record({ ...auditEntry, action: 'IntegrationConnect', outcome: 'failure', details: { reason: error.kind, credentials: 'machine-account' } });
        if (error.kind === 'invalid_grant') throw new HttpError(422, 'invalid_credentials', 'Booking.com refused these machine-account credentials; check the client id and secret');
        if (error.kind === 'transient') throw new HttpError(503, 'provider_unavailable', 'Booking.com could not check the credentials just now; try again shortly');
        throw new HttpError(502, 'provider_error', `Booking.com gave an unexpected answer: ${error.message}`);
      }

      const connection = await db.transaction(async (transaction) => {
        const live = await findOrCreateLiveConnection(transaction, user.id, PROVIDER);
        const sealed = crypto.encrypt(credentials, connectionColumn(live.id, 'refresh_token_enc'));
        if (live.status === 'disconnecting' || !(await storeMachineAccountCredentials(transaction, live.id, sealed))) {
          throw new HttpError(409, 'disconnect_in_progress', 'The previous connection is still being disconnected; try again shortly');
        }
        await addHotelMappings(transaction, live.id, hotelIds);
        await audit.record({ ...auditEntry, action: 'IntegrationConnectStarted', outcome: 'success', connectionId: live.id, details: { credentials: 'machine-account', hotels: hotelIds.length } }, transaction);
        return live;
      });

      await temporal.workflow.signalWithStart<typeof connectionWorkflow, []>('connectionWorkflow', {
        workflowId: connection.workflowId,
        taskQueue: config.temporal.taskQueue,
        args: [connectionWorkflowInput(config, connection)],
        signal: credentialsStoredSignal,
        signalArgs: [],
      });
      return reply.code(202).send({ connectionId: connection.id, status: connection.status, workflowId: connection.workflowId });
    },
  );
}
