import type { Config } from '../config';
import { AirbnbAdapter } from './airbnb';
import { AirbnbReservationFeatures } from './airbnb-features';
import { BookingAdapter } from './booking';
import { BookingReservationFeatures } from './booking-features';
import type { ProviderFeaturesRegistry } from './features';
import { GoogleCalendarAdapter } from './google-calendar';
import { GoogleCalendarFeatures } from './google-calendar-features';
import { MicrosoftCalendarAdapter } from './microsoft-calendar';
import { MicrosoftCalendarFeatures } from './microsoft-calendar-features';
import type { ProviderRegistry } from './provider';

/*
 * The one place that knows every provider's implementation: provider.ts and features.ts define what a
 * provider is, and the adapters depend on them, not the other way round.
 */

/** Providers without credentials are left out: their routes answer that the provider is not configured. */
export function createProviderRegistry(config: Config): ProviderRegistry {
  return {
    ...(config.google.credentials ? { 'google-calendar': new GoogleCalendarAdapter(config.google, config.google.credentials) } : {}),
    ...(config.microsoft.credentials ? { 'microsoft-calendar': new MicrosoftCalendarAdapter(config.microsoft, config.microsoft.credentials) } : {}),
    ...(config.airbnb.credentials ? { airbnb: new AirbnbAdapter(config.airbnb, config.airbnb.credentials) } : {}),
    'booking-com': new BookingAdapter(config.booking),
  };
}

/** Providers whose adapter is configured get their features; each entry is built from the same settings. */
export function createProviderFeatures(config: Config, providers: ProviderRegistry): ProviderFeaturesRegistry {
  const features: ProviderFeaturesRegistry = {};
  if (providers['google-calendar']) features['google-calendar'] = new GoogleCalendarFeatures(config.google, config.webhookBaseUrl);
  if (providers['booking-com']) features['booking-com'] = new BookingReservationFeatures(config.booking);
  if (providers['microsoft-calendar']) features['microsoft-calendar'] = new MicrosoftCalendarFeatures(config.microsoft, config.webhookBaseUrl);
  if (providers.airbnb && config.airbnb.credentials) features.airbnb = new AirbnbReservationFeatures(config.airbnb, config.airbnb.credentials, config.webhookBaseUrl);
  return features;
}
