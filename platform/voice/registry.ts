import type { Config } from '../config';
import { AlexaEventGatewayClient } from './alexa-event-gateway';
import { HomeGraphClient } from './home-graph';
import { LoginWithAmazonClient } from './login-with-amazon';
import { parseServiceAccountKey } from './service-account-key';
import type { VoicePlatforms } from './voice-platform';

/**
 * The voice platforms' APIs as configured. A bad service account key throws a ConfigError, so the
 * process stops at start. `now` is what the service account's JWTs and token cache take the time to be.
 */
export function createVoicePlatforms(config: Config, options: { now?: () => number } = {}): VoicePlatforms {
  const { alexa, google, requestTimeoutMs } = config.voice;
  return {
    loginWithAmazon: alexa.lwaCredentials ? new LoginWithAmazonClient(alexa.lwaTokenUrl, alexa.lwaCredentials, requestTimeoutMs) : undefined,
    alexaEventGateway: new AlexaEventGatewayClient(alexa.eventGatewayUrls, requestTimeoutMs),
    homeGraph: google.serviceAccountKey
      ? new HomeGraphClient(parseServiceAccountKey(google.serviceAccountKey), { tokenUrl: google.tokenUrl, homeGraphUrl: google.homeGraphUrl, requestTimeoutMs, ...(options.now ? { now: options.now } : {}) })
      : undefined,
  };
}
