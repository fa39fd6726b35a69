import type { FastifyInstance } from 'fastify';
import adminVoiceDevices from './admin-devices';
import alexaSkill from './alexa-skill';
import alexaSmartHome from './alexa-smart-home';
import voiceCommandLimits from './command-limits';
import voiceDeviceLinks from './device-links';
import googleFulfillment from './google-fulfillment';

/**
 * Everything voice: the users' device links, the endpoints Alexa and Google call, and the operators'
 * view. Each area is its own encapsulated plugin; the voice command limits are shared by all of them,
 * so a device (or user) has one budget whichever endpoint its commands reach.
 */
export default async function voice(app: FastifyInstance) {
  await app.register(voiceCommandLimits);
  for (const plugin of [voiceDeviceLinks, alexaSkill, alexaSmartHome, googleFulfillment, adminVoiceDevices]) {
    await app.register(plugin);
  }
}
