import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { propertyOccupancyOn } from '../../../db/queries/voice-commands';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { auditVoiceCommand, todayUtc } from './voice-commands';
import { authenticateVoiceCaller, bearerToken, type VoiceCaller } from './voice-caller';
import { requestVoiceDeviceUnlink } from './unlink';

export const GOOGLE_FULFILLMENT_PATH = '/api/v1/voice/google/fulfillment';

/** Occupancy changes with stays, not with motion: Google's sensor settings, for the record. */
const OCCUPANCY_SENSOR = { occupancySensorType: 'PIR', occupiedToUnoccupiedDelaySec: 60, unoccupiedToOccupiedDelaySec: 60, unoccupiedToOccupiedEventThreshold: 1 } as const;

const deviceTargetSchema = { type: 'object', required: ['id'], properties: { id: safeString(200) } } as const;

const fulfillmentBodySchema = {
  type: 'object',
  required: ['requestId', 'inputs'],
  properties: {
    requestId: { type: 'string', maxLength: 200 },
    inputs: {
      type: 'array',
      minItems: 1,
      maxItems: 10,
      items: {
        type: 'object',
        required: ['intent'],
        properties: {
          intent: { type: 'string', maxLength: 200 },
          payload: {
            type: 'object',
            properties: {
              devices: { type: 'array', maxItems: 500, items: deviceTargetSchema },
              commands: {
                type: 'array',
                maxItems: 100,
                items: { type: 'object', required: ['devices'], properties: { devices: { type: 'array', maxItems: 500, items: deviceTargetSchema } } },
              },
            },
          },
        },
      },
    },
  },
} as const;

interface FulfillmentBody {
  requestId: string;
  inputs: Array<{ intent: string; payload?: { devices?: Array<{ id: string }>; commands?: Array<{ devices: Array<{ id: string }> }> } }>;
}

const SYNC = 'action.devices.SYNC';
const QUERY = 'action.devices.QUERY';
const EXECUTE = 'action.devices.EXECUTE';
const DISCONNECT = 'action.devices.DISCONNECT';
const INTENTS = [SYNC, QUERY, EXECUTE, DISCONNECT];

/**
 * Errors of the whole request, as Google expects them: HTTP 200 with the global `errorCode` of its
 * smart-home error list (and a `debugString` for the developer console). Only an invalid token is
 * answered otherwise (401).
 */
const GOOGLE_ERROR_CODES: Record<string, string> = {
  unsupported_intent: 'notSupported',
  insufficient_scope: 'authFailure',
  rate_limited: 'transientError',
};

/**
 * Google Home cloud-to-cloud fulfillment (`POST /api/v1/voice/google/fulfillment`), authenticated by
 * our access token of a Google voice client. An invalid or revoked token gets 401, which makes Google
 * drop the link, as it expects; a fault on our side gets 5xx, never 401; a request we refuse as a
 * whole gets Google's global errorCode. Each of the user's properties is an occupancy sensor: SYNC
 * lists them (agentUserId = the device id), QUERY answers occupied or not from today's confirmed
 * reservations, EXECUTE has nothing to run, DISCONNECT unlinks.
 */
export default async function googleFulfillment(app: FastifyInstance) {
  const { db } = app.services;

  app.post<{ Body: FulfillmentBody }>(
    GOOGLE_FULFILLMENT_PATH,
    {
      schema: {
        summary: 'Google Home fulfillment (SYNC, QUERY, EXECUTE, DISCONNECT)',
        description:
          "Bearer: our access token of a Google voice client. SYNC: the user's properties as occupancy sensors; QUERY: occupied today or not; EXECUTE: functionNotSupported; " +
          'DISCONNECT: `{}` and the device is unlinked. 401 for an invalid token (Google unlinks). A request refused as a whole answers 200 `{requestId, payload: {errorCode, debugString}}`: ' +
          '`notSupported` for any other intent, `authFailure` when the link was not granted what the intent reads, `transientError` over the voice command limits (with Retry-After). 400 for a malformed body.',
        body: fulfillmentBodySchema,
        response: {
          200: { type: 'object', additionalProperties: true, description: "Google's intent response: `{requestId, payload}`, or `{}` for DISCONNECT." },
          400: errorResponseSchema,
          401: errorResponseSchema,
        },
      },
    },
    async (request, reply) => {
      const caller = await authenticateVoiceCaller(app, bearerToken(request.headers.authorization), 'google');
      if (!caller) {
        reply.header('www-authenticate', 'Bearer realm="google-home", error="invalid_token"');
        throw new HttpError(401, 'invalid_token', 'The access token is not valid for a linked Google device');
      }
      try {
        return await fulfill(request, reply, caller);
      } catch (error) {
        if (!(error instanceof HttpError) || GOOGLE_ERROR_CODES[error.code] === undefined) throw error;
        return { requestId: request.body.requestId, payload: { errorCode: GOOGLE_ERROR_CODES[error.code], debugString: error.message } };
      }
    },
  );

  /** The intent of an authenticated request; a refusal of the whole request is thrown as an HttpError. */
  async function fulfill(request: FastifyRequest<{ Body: FulfillmentBody }>, reply: FastifyReply, caller: VoiceCaller) {
    const { requestId, inputs } = request.body;
    const unsupported = inputs.find((input) => !INTENTS.includes(input.intent));
    if (unsupported) throw new HttpError(400, 'unsupported_intent', `${unsupported.intent} is not an intent this fulfillment handles (${INTENTS.join(', ')})`);
    const input = inputs[0]!;
    // An unlink is never refused for being one command too many.
    if (input.intent === DISCONNECT) return disconnect(request, caller);
    await app.voiceCommandLimits.admit(request, reply, caller);
    await auditVoiceCommand(app, request, caller, input.intent);
    if (input.intent === SYNC) return { requestId, payload: await sync(caller) };
    if (input.intent === QUERY) return { requestId, payload: await query(caller, input.payload?.devices ?? []) };
    return { requestId, payload: { commands: execute(input.payload?.commands ?? []) } };
  }

  async function sync(caller: VoiceCaller) {
    requireScope(caller, 'properties:read');
    const properties = await propertyOccupancyOn(db, caller.userId, todayUtc(app));
    return {
      agentUserId: caller.device.id,
      devices: properties.map((property) => ({
        id: property.id,
        type: 'action.devices.types.SENSOR',
        traits: ['action.devices.traits.OccupancySensing'],
        name: { name: property.name },
        willReportState: true,
        attributes: { occupancySensorConfiguration: [OCCUPANCY_SENSOR] },
      })),
    };
  }

  async function query(caller: VoiceCaller, targets: Array<{ id: string }>) {
    requireScope(caller, 'reservations:read');
    const occupancy = new Map((await propertyOccupancyOn(db, caller.userId, todayUtc(app))).map((property) => [property.id, property.occupied]));
    const devices: Record<string, Record<string, unknown>> = {};
    for (const { id } of targets) {
      const occupied = occupancy.get(id);
      devices[id] = occupied === undefined
        ? { online: false, status: 'ERROR', errorCode: 'deviceNotFound' }
        : { online: true, status: 'SUCCESS', occupancy: occupied ? 'OCCUPIED' : 'UNOCCUPIED' };
    }
    return { devices };
  }

  async function disconnect(request: FastifyRequest, caller: VoiceCaller): Promise<Record<string, never>> {
    await requestVoiceDeviceUnlink(app.services, caller.device, { direction: 'google_disconnect', requestedBy: { type: 'platform', id: 'google' }, origin: requestOrigin(request) });
    return {};
  }
}

/** Sensors have nothing to execute: every command fails as not supported. */
function execute(commands: Array<{ devices: Array<{ id: string }> }>) {
  return commands.map((command) => ({ ids: command.devices.map((device) => device.id), status: 'ERROR', errorCode: 'functionNotSupported' }));
}

function requireScope(caller: VoiceCaller, scope: string): void {
  if (!caller.scopes.includes(scope)) throw new HttpError(403, 'insufficient_scope', `The link was not granted ${scope}; link the account again`);
}
