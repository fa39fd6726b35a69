import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { alexaRegion, type AlexaRegionName } from '../../../db/queries/voice-devices';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { checkConfiguredBearer } from '../oauth/static-bearer';
import { acceptAlexaGrant } from './accept-grant';
import { alexaRequestEnvelope, handleSkillEvent, isSkillEvent } from './alexa-skill-events';
import { rateLimitedResponse } from './command-limits';
import { auditVoiceCommand } from './voice-commands';
import { authenticateVoiceCaller } from './voice-caller';

export const ALEXA_SMART_HOME_PATH = '/api/v1/voice/alexa/smart-home';
/**
 * The region of the Lambda that received what the relay forwards (NA, EU or FE): Amazon sends a
 * user's directives to the function of the user's region, whose event gateway is the one to use.
 */
export const ALEXA_REGION_HEADER = 'x-alexa-region';

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

const directiveSchema = {
  type: 'object',
  required: ['header', 'payload'],
  properties: {
    header: headerSchema,
    endpoint: { type: 'object', properties: { endpointId: { type: 'string', maxLength: 256 } } },
    payload: { type: 'object' },
  },
} as const;

/** A directive, or a skill event as Alexa sent it to the function (its fields are read by alexa-skill-events.ts). */
const relayedBodySchema = {
  type: 'object',
  anyOf: [
    { required: ['directive'], properties: { directive: directiveSchema } },
    { required: ['request'], properties: { request: { type: 'object', required: ['type'], properties: { type: { type: 'string', pattern: '^AlexaSkillEvent\\.' } } } } },
  ],
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

type RelayedBody = DirectiveBody | { directive?: undefined; request: { type: string } };

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
 * What the operator's own function (the skill's Lambda) relays to us, authenticated with
 * `Authorization: Bearer <ALEXA_RELAY_TOKEN>` (503 while it is unset), with the region of the Lambda
 * that received it in `X-Alexa-Region`:
 * - smart-home directives. Today that is Alexa.Authorization.AcceptGrant: the grantee token (our
 *   access token) names the device, the region is recorded on it, and the grant code goes to its
 *   workflow, which exchanges it at Login with Amazon at once; the answer is AcceptGrant.Response or
 *   ErrorResponse ACCEPT_GRANT_FAILED, in Alexa's shapes, for the function to hand back. Any other
 *   directive gets an Alexa ErrorResponse INVALID_DIRECTIVE.
 * - skill events (`AlexaSkillEvent.*`): Amazon sends a smart-home skill's events to its Lambda, not to
 *   an HTTPS endpoint, so SkillDisabled reaches us only this way. Handled as the signed skill
 *   endpoint handles them; answered 204.
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

  app.post<{ Body: RelayedBody }>(
    ALEXA_SMART_HOME_PATH,
    {
      schema: {
        summary: 'Alexa smart-home directives and skill events relayed by the skill\'s own function',
        description:
          'Authenticated with `Authorization: Bearer <ALEXA_RELAY_TOKEN>`, with the region of the Lambda that received the request in `X-Alexa-Region` (NA, EU or FE). ' +
          'Alexa.Authorization.AcceptGrant (payloadVersion 3; X-Alexa-Region required, else 400 invalid_alexa_region): the region is recorded on the device the grantee token (our access token) ' +
          'belongs to, and the grant code is exchanged at Login with Amazon by its device workflow; answers AcceptGrant.Response or ErrorResponse ACCEPT_GRANT_FAILED. ' +
          'Other directives: ErrorResponse INVALID_DIRECTIVE. Skill events (AlexaSkillEvent.*, as Alexa sent them to the function): SkillDisabled unlinks, SkillAccountLinked records the skill user; 204.',
        body: relayedBodySchema,
        response: { 200: eventResponseSchema, 204: { type: 'null' }, 400: errorResponseSchema, 401: errorResponseSchema, ...rateLimitedResponse, 503: errorResponseSchema },
      },
    },
    async (request, reply): Promise<AlexaEvent | undefined> => {
      const region = relayRegion(request);
      const body = request.body;
      if (body.directive === undefined) {
        await skillEvent(request, region);
        return reply.code(204).send();
      }
      const { header, payload } = body.directive;
      if (header.namespace === 'Alexa.Authorization' && header.name === 'AcceptGrant') {
        if (region === null) throw new HttpError(400, 'invalid_alexa_region', `AcceptGrant needs ${REGION_HEADER_RULE}`);
        return acceptGrant(request, reply, header, payload, region);
      }
      return alexaError(header, body.directive.endpoint?.endpointId, 'INVALID_DIRECTIVE', `${header.namespace}.${header.name} is not supported by this skill`);
    },
  );

  async function skillEvent(request: FastifyRequest<{ Body: RelayedBody }>, region: AlexaRegionName | null): Promise<void> {
    const parsed = alexaRequestEnvelope.safeParse(request.body);
    if (!parsed.success || !isSkillEvent(parsed.data)) {
      throw new HttpError(400, 'invalid_skill_event', `The skill event lacks ${parsed.success ? 'an AlexaSkillEvent type' : parsed.error.issues.map((issue) => issue.path.join('.')).join(', ')}`);
    }
    const skillId = parsed.data.context?.System?.application?.applicationId;
    if (config.voice.alexa.skillId && skillId !== undefined && skillId !== config.voice.alexa.skillId) {
      throw new HttpError(400, 'wrong_skill', 'The skill event is for another skill than ALEXA_SKILL_ID');
    }
    await handleSkillEvent(app, request, parsed.data, region);
  }

  async function acceptGrant(request: FastifyRequest, reply: FastifyReply, header: DirectiveHeader, payload: Record<string, unknown>, region: AlexaRegionName): Promise<AlexaEvent> {
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
    const result = await acceptAlexaGrant(app.services, caller.device, grant.code, region);
    if (!result.accepted) return failed(`Login with Amazon did not accept the grant (${result.reason})`);
    return { event: { header: eventHeader(header, 'Alexa.Authorization', 'AcceptGrant.Response'), payload: {} } };
  }
}

const REGION_HEADER_RULE = `X-Alexa-Region: the region of the Lambda that received it (${alexaRegion.options.join(', ')})`;

/** The region the relay states; null when it states none. A region that is not one of Alexa's is refused (400). */
function relayRegion(request: FastifyRequest): AlexaRegionName | null {
  const stated = request.headers[ALEXA_REGION_HEADER];
  if (stated === undefined) return null;
  const region = alexaRegion.safeParse(typeof stated === 'string' ? stated.trim().toUpperCase() : undefined);
  if (!region.success) throw new HttpError(400, 'invalid_alexa_region', `Expected ${REGION_HEADER_RULE}`);
  return region.data;
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
