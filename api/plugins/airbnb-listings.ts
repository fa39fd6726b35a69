import type { FastifyInstance, FastifyRequest } from 'fastify';
import { findLatestConnection, type ConnectionRow } from '../../db/queries/connections';
import {
  findListingMapping,
  listListingMappings,
  remapListingReservations,
  setUserListingMapping,
  type ListingMappingRow,
} from '../../db/queries/listing-mappings';
import { findProperty } from '../../db/queries/properties';
import { UUID_PATTERN } from '../../platform/uuid';
import { errorResponseSchema, HttpError } from '../errors';
import { requestOrigin } from '../request-origin';

const PROVIDER = 'airbnb';
const LIVE_STATUSES = new Set(['pending', 'active', 'needs_reauth']);

const listingSchema = {
  type: 'object',
  required: ['listingId', 'listingName', 'propertyId', 'propertyName', 'mappedBy', 'updatedAt'],
  properties: {
    listingId: { type: 'string' },
    listingName: { type: 'string' },
    propertyId: { type: ['string', 'null'] },
    propertyName: { type: ['string', 'null'] },
    mappedBy: { type: 'string', enum: ['automatic', 'user'] },
    updatedAt: { type: 'string' },
  },
} as const;

const listingIdParams = {
  type: 'object',
  required: ['listingId'],
  properties: { listingId: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
} as const;

interface MappingBody {
  propertyId: string | null;
}

/**
 * The user's review of which property each Airbnb listing stands for. The workflow maps listings to
 * properties of the same name when it sets the connection up; whatever the user chooses here wins, is
 * never overwritten by that automatic mapping, and moves the listing's stored reservations with it.
 */
export default async function airbnbListingRoutes(app: FastifyInstance) {
  const { db, audit } = app.services;

  app.addHook('preHandler', app.authenticate);

  app.get(
    '/listings',
    {
      schema: {
        response: {
          200: { type: 'object', required: ['connectionId', 'listings'], properties: { connectionId: { type: 'string' }, listings: { type: 'array', items: listingSchema } } },
          401: errorResponseSchema,
          404: errorResponseSchema,
        },
      },
    },
    async (request) => {
      const connection = await liveConnection(request.user!.id);
      return { connectionId: connection.id, listings: (await listListingMappings(db, connection.id)).map(describe) };
    },
  );

  app.put<{ Params: { listingId: string }; Body: MappingBody }>(
    '/listings/:listingId',
    {
      schema: {
        params: listingIdParams,
        body: {
          type: 'object',
          required: ['propertyId'],
          additionalProperties: false,
          properties: { propertyId: { anyOf: [{ type: 'string', pattern: UUID_PATTERN }, { type: 'null' }] } },
        },
        response: { 200: listingSchema, 400: errorResponseSchema, 401: errorResponseSchema, 404: errorResponseSchema },
      },
    },
    async (request) => {
      const user = request.user!;
      const { listingId } = request.params;
      const { propertyId } = request.body;
      const connection = await liveConnection(user.id);
      if (propertyId !== null) {
        const property = await findProperty(db, propertyId);
        // Someone else's property is answered like one that does not exist: its id is not confirmed to anyone.
        if (property?.ownerUserId !== user.id) return refuse(request, connection, listingId, property ? 'foreign_property' : 'unknown_property');
      }
      const mapping = await db.transaction(async (transaction) => {
        const changed = await setUserListingMapping(transaction, connection.id, listingId, propertyId);
        if (changed === null) return null;
        const remappedReservations = await remapListingReservations(transaction, connection.id, listingId);
        await audit.record(
          {
            action: 'ListingMappingChange',
            outcome: 'success',
            actor: { type: 'user', id: user.id },
            userId: user.id,
            provider: PROVIDER,
            connectionId: connection.id,
            origin: requestOrigin(request),
            details: { listingId, propertyId, previousPropertyId: changed.previousPropertyId, mappedBy: 'user', remappedReservations },
          },
          transaction,
        );
        return findListingMapping(transaction, connection.id, listingId);
      });
      if (mapping === null) return refuse(request, connection, listingId, 'unknown_listing');
      return describe(mapping);
    },
  );

  async function liveConnection(userId: string): Promise<ConnectionRow> {
    const connection = await findLatestConnection(db, userId, PROVIDER);
    if (!connection || !LIVE_STATUSES.has(connection.status)) throw new HttpError(404, 'not_connected', 'There is no Airbnb connection');
    return connection;
  }

  async function refuse(request: FastifyRequest, connection: ConnectionRow, listingId: string, reason: 'unknown_listing' | 'unknown_property' | 'foreign_property'): Promise<never> {
    await audit.record({
      action: 'ListingMappingChange',
      outcome: 'failure',
      actor: { type: 'user', id: connection.userId },
      userId: connection.userId,
      provider: PROVIDER,
      connectionId: connection.id,
      origin: requestOrigin(request),
      details: { listingId, reason },
    });
    if (reason === 'unknown_listing') throw new HttpError(404, 'unknown_listing', 'The Airbnb connection has no such listing');
    throw new HttpError(404, 'unknown_property', 'You have no property with this id');
  }
}

function describe(mapping: ListingMappingRow) {
  return {
    listingId: mapping.externalListingId,
    listingName: mapping.listingName,
    propertyId: mapping.propertyId,
    propertyName: mapping.propertyName,
    mappedBy: mapping.mappedBy,
    updatedAt: new Date(mapping.updatedAt).toISOString(),
  };
}
