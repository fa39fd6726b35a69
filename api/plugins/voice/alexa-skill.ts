import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { forgetAlexaRequest, rememberAlexaRequest } from '../../../db/queries/alexa-skill-requests';
import { guestMovementsOn, type GuestMovement } from '../../../db/queries/voice-commands';
import { AlexaCertificateChainUnavailable, AlexaRequestRejected } from '../../../platform/voice/alexa-request-verification';
import { errorResponseSchema, HttpError } from '../../errors';
import { requestOrigin } from '../../request-origin';
import { alexaRequestEnvelope, handleSkillEvent, isSkillEvent, rememberAlexaUser, type AlexaRequestEnvelope } from './alexa-skill-events';
import { rateLimitedResponse } from './command-limits';
import { auditVoiceCommand, todayUtc } from './voice-commands';
import { authenticateVoiceCaller, type VoiceCaller } from './voice-caller';

export const ALEXA_SKILL_PATH = '/api/v1/voice/alexa/skill';
const MAX_BODY_BYTES = 128 * 1024;
/** Refused requests are audited up to this many a minute: forged traffic cannot flood the audit log. */
const REJECTION_AUDITS_PER_MINUTE = 20;
const GUESTS_INTENT = 'GetTodaysGuestsIntent';
const outputSpeech = { type: 'object', required: ['type', 'text'], properties: { type: { type: 'string' }, text: { type: 'string' } } } as const;
const skillResponseSchema = {
  type: 'object',
  required: ['version', 'response'],
  description: 'An Alexa custom skill response (speech, an optional LinkAccount card).',
  properties: {
    version: { type: 'string' },
    response: {
      type: 'object',
      properties: {
        outputSpeech,
        reprompt: { type: 'object', required: ['outputSpeech'], properties: { outputSpeech } },
        card: { type: 'object', required: ['type'], properties: { type: { type: 'string' } } },
        shouldEndSession: { type: 'boolean' },
      },
    },
  },
} as const;

interface SkillResponse {
  version: '1.0';
  response: {
    outputSpeech?: { type: 'PlainText'; text: string };
    reprompt?: { outputSpeech: { type: 'PlainText'; text: string } };
    card?: { type: 'LinkAccount' };
    shouldEndSession?: boolean;
  };
}

/**
 * The Alexa custom skill endpoint (`POST /api/v1/voice/alexa/skill`), for requests that come straight
 * from Alexa. Each is verified as Amazon documents (alexa-request-verification.ts) and taken once:
 * forged, stale, replayed or another skill's requests get 400. The user is whoever our access token
 * (`context.System.user.accessToken`) names; without a live one, Alexa is asked to show the
 * LinkAccount card. Skill events: SkillDisabled unlinks, SkillAccountLinked records the skill user id.
 */
export default async function alexaSkill(app: FastifyInstance) {
  const { db, audit, config } = app.services;
  const rejectionAudits = app.createRateLimit({ max: REJECTION_AUDITS_PER_MINUTE, timeWindow: 60_000, keyGenerator: () => 'alexa-skill-rejections' });

  // The signature covers the bytes as sent, so the body is kept raw; the verifier parses it.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_BODY_BYTES }, (_request, body, done) => done(null, body));

  app.post<{ Body: Buffer | undefined }>(
    ALEXA_SKILL_PATH,
    {
      schema: {
        summary: 'Alexa custom skill endpoint',
        description:
          'Requests signed by Alexa (SignatureCertChainUrl, Signature-256), for the skill ALEXA_SKILL_ID: LaunchRequest, GetTodaysGuestsIntent (today\'s check-ins and check-outs), ' +
          'AMAZON.HelpIntent, AMAZON.StopIntent, AMAZON.CancelIntent, SessionEndedRequest, and the skill events SkillDisabled (unlinks) and SkillAccountLinked. ' +
          '400 for a request that fails verification or was delivered before; 429 over the voice command limits; 503 while the skill is not configured.',
        response: { 200: skillResponseSchema, 400: errorResponseSchema, ...rateLimitedResponse, 503: errorResponseSchema },
      },
    },
    async (request, reply) => {
      const verifier = app.services.alexaRequestVerifier;
      if (!config.voice.alexa.skillId || !verifier) throw new HttpError(503, 'alexa_skill_not_configured', 'The Alexa skill endpoint is not configured on this server (ALEXA_SKILL_ID)');
      const skill = await verified(request);
      if (!(await rememberAlexaRequest(db, skill.request.requestId))) return reject(request, 'replayed', 'This request was delivered before');
      try {
        return await answer(request, reply, skill);
      } catch (error) {
        // A fault on our side: Alexa may deliver the request again.
        if (!(error instanceof HttpError)) await forgetAlexaRequest(db, skill.request.requestId);
        throw error;
      }
    },
  );

  async function verified(request: FastifyRequest<{ Body: Buffer | undefined }>): Promise<AlexaRequestEnvelope> {
    let envelope: unknown;
    try {
      envelope = await app.services.alexaRequestVerifier!.verify({
        signatureCertChainUrl: header(request, 'signaturecertchainurl'),
        signature256: header(request, 'signature-256'),
        rawBody: request.body ?? Buffer.alloc(0),
      });
    } catch (error) {
      if (error instanceof AlexaRequestRejected) return reject(request, error.reason, error.message);
      if (error instanceof AlexaCertificateChainUnavailable) throw new HttpError(503, 'certificate_unavailable', 'Amazon\'s signing certificate could not be fetched; try again');
      throw error;
    }
    const parsed = alexaRequestEnvelope.safeParse(envelope);
    if (!parsed.success) return reject(request, 'malformed_body', `The request lacks ${parsed.error.issues.map((issue) => issue.path.join('.')).join(', ')}`);
    return parsed.data;
  }

  async function answer(request: FastifyRequest, reply: FastifyReply, skill: AlexaRequestEnvelope): Promise<SkillResponse> {
    const { type } = skill.request;
    if (isSkillEvent(skill)) {
      await handleSkillEvent(app, request, skill);
      return { version: '1.0', response: {} };
    }
    if (type === 'SessionEndedRequest') return { version: '1.0', response: {} };
    const caller = await authenticateVoiceCaller(app, skill.context?.System?.user?.accessToken ?? skill.session?.user?.accessToken, 'alexa');
    if (!caller) return linkAccount();
    await app.voiceCommandLimits.admit(request, reply, caller);
    await rememberAlexaUser(app, caller.device, skill);
    const command = type === 'IntentRequest' ? skill.request.intent?.name ?? 'IntentRequest' : type;
    await auditVoiceCommand(app, request, caller, command);
    return respond(caller, command);
  }

  async function respond(caller: VoiceCaller, command: string): Promise<SkillResponse> {
    switch (command) {
      case 'LaunchRequest':
        return speak('Welcome. Ask me who checks in or out today.', { reprompt: 'You can ask: who checks in today?' });
      case GUESTS_INTENT:
        if (!caller.scopes.includes('reservations:read')) return linkAccount('This skill may not read your reservations. Please link your account again in the Alexa app.');
        return speak(describeGuestMovements(await guestMovementsOn(db, caller.userId, todayUtc(app))));
      case 'AMAZON.HelpIntent':
        return speak('I can tell you today\'s check-ins and check-outs at your properties. Ask: who checks in today?', { reprompt: 'Ask: who checks in today?' });
      case 'AMAZON.StopIntent':
      case 'AMAZON.CancelIntent':
        return speak('Goodbye.');
      default:
        return speak('Sorry, I can only tell you today\'s check-ins and check-outs.', { reprompt: 'Ask: who checks in today?' });
    }
  }

  async function reject(request: FastifyRequest, reason: string, message: string): Promise<never> {
    const audited = await rejectionAudits(request);
    if (audited.isAllowed || !audited.isExceeded) {
      await audit.record({
        action: 'VoiceRequestRejected',
        outcome: 'failure',
        actor: { type: 'system', id: 'alexa-skill' },
        provider: 'alexa',
        origin: requestOrigin(request),
        details: { endpoint: 'alexa-skill', reason },
      });
    }
    throw new HttpError(400, 'invalid_alexa_request', message);
  }
}

function speak(text: string, options: { reprompt?: string } = {}): SkillResponse {
  return {
    version: '1.0',
    response: {
      outputSpeech: { type: 'PlainText', text },
      ...(options.reprompt ? { reprompt: { outputSpeech: { type: 'PlainText', text: options.reprompt } } } : {}),
      shouldEndSession: options.reprompt === undefined,
    },
  };
}

function linkAccount(text = 'Please link your account in the Alexa app first.'): SkillResponse {
  return { version: '1.0', response: { outputSpeech: { type: 'PlainText', text }, card: { type: 'LinkAccount' }, shouldEndSession: true } };
}

/** "Today Ann checks in at Lake cabin. Bob checks out of Sea view." */
export function describeGuestMovements(movements: readonly GuestMovement[]): string {
  if (movements.length === 0) return 'There are no check-ins or check-outs at your properties today.';
  const sentence = (movement: GuestMovement) =>
    `${movement.guestName ?? 'A guest'} ${movement.movement === 'check_in' ? 'checks in at' : 'checks out of'} ${movement.propertyName}.`;
  return `Today: ${movements.map(sentence).join(' ')}`;
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === 'string' ? value : undefined;
}
