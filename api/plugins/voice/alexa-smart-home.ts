import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { checkConfiguredBearer } from '../oauth/static-bearer';
import { acceptAlexaGrant } from './accept-grant';
import { rateLimitedResponse } from './command-limits';
import { auditVoiceCommand } from './voice-commands';
import { authenticateVoiceCaller } from './voice-caller';

export const ALEXA_SMART_HOME_PATH = '/api/v1/voice/alexa/smart-home';

const headerSchema = {
  type: 'object',
  required: ['namespace', 'name', 'messageId', 'payloadVersion'],
  properties: {
    namespace: { type: 'string', maxLength: 200 },
    name: { type: 'string', maxLength: 200 },
    messageId: { type: 'string', maxLength: 200 },
    payloadVersion: { type: 'string', maxLength: 20 },
    correlationToken: { type: 'string', maxLength: 8192 },
  },
} as const;

const directiveBodySchema = {
  type: 'object',
  required: ['directive'],
  properties: {
    directive: {
      type: 'object',
      required: ['header', 'payload'],
      properties: {
        header: headerSchema,
        endpoint: { type: 'object', properties: { endpointId: { type: 'string', maxLength: 256 } } },
        payload: { type: 'object' },
      },
    },
  },
} as const;

interface DirectiveHeader {
  namespace: string;
  name: string;
  messageId: string;
  payloadVersion: string;
  correlationToken?: string;
}

interface DirectiveBody {
  directive: { header: DirectiveHeader; endpoint?: { endpointId?: string }; payload: Record<string, unknown> };
}

const eventResponseSchema = {
  type: 'object',
  required: ['event'],
  description: 'An Alexa smart-home event: AcceptGrant.Response, or an ErrorResponse.',
  properties: {
    event: {
      type: 'object',
      required: ['header', 'payload'],
      properties: {
        header: headerSchema,
        endpoint: { type: 'object', properties: { endpointId: { type: 'string' } } },
        payload: { type: 'object', properties: { type: { type: 'string' }, message: { type: 'string' } } },
      },
    },
  },
} as const;

interface AlexaEvent {
  event: { header: DirectiveHeader; endpoint?: { endpointId: string }; payload: { type?: string; message?: string } };
}

/**
 * Smart-home directives relayed to us by the operator's own function (the skill's Lambda), which
 * authenticates with `Authorization: Bearer <ALEXA_RELAY_TOKEN>` (503 while it is unset). Today that
 * is Alexa.Authorization.AcceptGrant: the grantee token (our access token) names the device, the
 * grant code goes to its workflow, which exchanges it at Login with Amazon at once; the answer is
 * AcceptGrant.Response or ErrorResponse ACCEPT_GRANT_FAILED, in Alexa's shapes, for the function to
 * hand back. Any other directive gets an Alexa ErrorResponse INVALID_DIRECTIVE.
 */
export default async function alexaSmartHome(app: FastifyInstance) {
  const { config, audit } = app.services;
  const relayToken = config.voice.alexa.relayToken;

  // Before the body is parsed: an unauthenticated caller learns nothing.
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    if (relayToken === undefined) throw new HttpError(503, 'relay_not_configured', 'The Alexa smart-home relay is not configured on this server (ALEXA_RELAY_TOKEN)');
    const check = checkConfiguredBearer(request, relayToken);
    if (check !== 'ok') {
      reply.header('www-authenticate', check === 'wrong' ? 'Bearer realm="alexa-relay", error="invalid_token"' : 'Bearer realm="alexa-relay"');
      throw new HttpError(401, check === 'wrong' ? 'invalid_token' : 'unauthenticated', 'The relay bearer token is missing or wrong');
    }
  });

  app.post<{ Body: DirectiveBody }>(
    ALEXA_SMART_HOME_PATH,
    {
      schema: {
        summary: 'Alexa smart-home directives relayed by the skill\'s own function',
        description:
          'Authenticated with `Authorization: Bearer <ALEXA_RELAY_TOKEN>`. Alexa.Authorization.AcceptGrant (payloadVersion 3): the grant code is exchanged at Login with Amazon by the device ' +
          'workflow of the device the grantee token (our access token) belongs to; answers AcceptGrant.Response or ErrorResponse ACCEPT_GRANT_FAILED. Other directives: ErrorResponse INVALID_DIRECTIVE.',
        body: directiveBodySchema,
        response: { 200: eventResponseSchema, 400: errorResponseSchema, 401: errorResponseSchema, ...rateLimitedResponse, 503: errorResponseSchema },
      },
    },
    async (request, reply): Promise<AlexaEvent> => {
      const { header, payload } = request.body.directive;
      if (header.namespace === 'Alexa.Authorization' && header.name === 'AcceptGrant') return acceptGrant(request, reply, header, payload);
      return alexaError(header, request.body.directive.endpoint?.endpointId, 'INVALID_DIRECTIVE', `${header.namespace}.${header.name} is not supported by this skill`);
    },
  );

  async function acceptGrant(request: FastifyRequest, reply: FastifyReply, header: DirectiveHeader, payload: Record<string, unknown>): Promise<AlexaEvent> {
    const grant = payload.grant as { type?: unknown; code?: unknown } | undefined;
    const grantee = payload.grantee as { type?: unknown; token?: unknown } | undefined;
    const failed = (message: string) => alexaError(header, undefined, 'ACCEPT_GRANT_FAILED', message);
    if (header.payloadVersion !== '3' || grant?.type !== 'OAuth2.AuthorizationCode' || !isCode(grant.code) || grantee?.type !== 'BearerToken' || typeof grantee.token !== 'string') {
      return failed('The AcceptGrant directive lacks an OAuth2.AuthorizationCode grant or a BearerToken grantee');
    }
    const caller = await authenticateVoiceCaller(app, grantee.token, 'alexa');
    if (!caller) {
      await audit.record({
        action: 'VoiceAcceptGrant',
        outcome: 'failure',
        actor: { type: 'system', id: 'alexa-relay' },
        provider: 'alexa',
        origin: requestOrigin(request),
        details: { reason: 'unknown_grantee' },
      });
      return failed('The grantee token does not belong to a linked Alexa device');
    }
    await app.voiceCommandLimits.admit(request, reply, caller);
    await auditVoiceCommand(app, request, caller, 'Alexa.Authorization.AcceptGrant');
    const result = await acceptAlexaGrant(app.services, caller.device, grant.code);
    if (!result.accepted) return failed(`Login with Amazon did not accept the grant (${result.reason})`);
    return { event: { header: eventHeader(header, 'Alexa.Authorization', 'AcceptGrant.Response'), payload: {} } };
  }
}

function isCode(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= 2048 && !value.includes('\u0000');
}

function eventHeader(directive: DirectiveHeader, namespace: string, name: string): DirectiveHeader {
  return {
    namespace,
    name,
    messageId: randomUUID(),
    payloadVersion: '3',
    ...(directive.correlationToken ? { correlationToken: directive.correlationToken } : {}),
  };
}

function alexaError(directive: DirectiveHeader, endpointId: string | undefined, type: string, message: string): AlexaEvent {
  // AcceptGrant's errors belong to its own interface; every other directive's to the generic Alexa one.
  const namespace = type === 'ACCEPT_GRANT_FAILED' ? 'Alexa.Authorization' : 'Alexa';
  return {
    event: {
      header: eventHeader(directive, namespace, 'ErrorResponse'),
      ...(endpointId ? { endpoint: { endpointId } } : {}),
      payload: { type, message },
    },
  };
}
