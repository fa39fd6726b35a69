import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { findLinkedAlexaUserDevices, recordAlexaUser, type AlexaRegionName, type VoiceDeviceRow } from '../../../db/queries/voice-devices';
import { requestOrigin } from '../../request-origin';
import { authenticateVoiceCaller } from './voice-caller';
import { requestVoiceDeviceUnlink } from './unlink';

/**
 * What Alexa's requests and skill events carry, as both ways they reach us read them: straight from
 * Alexa to the signed skill endpoint (alexa-skill.ts), or relayed by the skill's own function
 * (alexa-smart-home.ts), which is where Amazon sends the skill events of a smart-home skill.
 */

// A Map: the host comes from the request, and a plain object would answer "constructor" with a function.
const REGIONS = new Map<string, AlexaRegionName>([
  ['api.amazonalexa.com', 'NA'],
  ['api.eu.amazonalexa.com', 'EU'],
  ['api.fe.amazonalexa.com', 'FE'],
]);

// PostgreSQL refuses NUL in text; ids that reach a query exclude it.
const text = (maxLength: number) => z.string().min(1).max(maxLength).refine((value) => !value.includes('\u0000'), 'must not contain NUL');
const alexaUser = z.object({ userId: text(512), accessToken: z.string().max(8192).optional() }).passthrough();

/** What we read of an Alexa request envelope (a custom skill request or a skill event). */
export const alexaRequestEnvelope = z.object({
  session: z.object({ user: alexaUser.optional() }).passthrough().optional(),
  context: z
    .object({
      System: z
        .object({
          application: z.object({ applicationId: z.string().max(512) }).passthrough().optional(),
          user: alexaUser.optional(),
          apiEndpoint: z.string().max(512).optional(),
        })
        .passthrough()
        .optional(),
    })
    .passthrough()
    .optional(),
  request: z
    .object({
      type: text(200),
      requestId: text(512),
      intent: z.object({ name: text(200) }).passthrough().optional(),
      body: z.object({ accessToken: z.string().max(8192).optional() }).passthrough().optional(),
    })
    .passthrough(),
});
export type AlexaRequestEnvelope = z.infer<typeof alexaRequestEnvelope>;

export function isSkillEvent(envelope: AlexaRequestEnvelope): boolean {
  return envelope.request.type.startsWith('AlexaSkillEvent.');
}

/**
 * SkillDisabled ends every link of the skill user (and the link its access token names, when it
 * carries one); SkillAccountLinked tells us who the skill user is. `region`, when the caller knows it,
 * is the region of the event gateway; otherwise the envelope's apiEndpoint tells it.
 */
export async function handleSkillEvent(app: FastifyInstance, request: FastifyRequest, envelope: AlexaRequestEnvelope, region: AlexaRegionName | null = null): Promise<void> {
  const { db } = app.services;
  const alexaUserId = envelope.context?.System?.user?.userId;
  if (envelope.request.type === 'AlexaSkillEvent.SkillDisabled') {
    const devices = alexaUserId ? [...(await findLinkedAlexaUserDevices(db, alexaUserId))] : [];
    const named = await authenticateVoiceCaller(app, envelope.context?.System?.user?.accessToken, 'alexa');
    if (named && !devices.some((device) => device.id === named.device.id)) devices.push(named.device);
    if (devices.length === 0) request.log.info('Alexa SkillDisabled for a skill user with no linked device');
    for (const device of devices) {
      await requestVoiceDeviceUnlink(app.services, device, { direction: 'alexa_skill_disabled', requestedBy: { type: 'platform', id: 'alexa' }, origin: requestOrigin(request) });
    }
  } else if (envelope.request.type === 'AlexaSkillEvent.SkillAccountLinked') {
    const caller = await authenticateVoiceCaller(app, envelope.request.body?.accessToken, 'alexa');
    if (caller) await rememberAlexaUser(app, caller.device, envelope, region);
  }
}

/** Skill events name only the skill user id; the region tells the device workflow which event gateway to use. */
export async function rememberAlexaUser(app: FastifyInstance, device: VoiceDeviceRow, envelope: AlexaRequestEnvelope, region: AlexaRegionName | null = null): Promise<void> {
  const alexaUserId = envelope.context?.System?.user?.userId ?? envelope.session?.user?.userId;
  if (!alexaUserId) return;
  await recordAlexaUser(app.services.db, device.id, alexaUserId, region ?? regionOf(envelope.context?.System?.apiEndpoint));
}

function regionOf(apiEndpoint: string | undefined): AlexaRegionName | null {
  if (!apiEndpoint) return null;
  try {
    return REGIONS.get(new URL(apiEndpoint).hostname.toLowerCase()) ?? null;
  } catch {
    return null;
  }
}
