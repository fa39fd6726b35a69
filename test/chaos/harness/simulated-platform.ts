import type { FakeAirbnb } from '../../../fakes/airbnb';
import type { FakeBooking } from '../../../fakes/booking';
import type { FakeMicrosoft } from '../../../fakes/microsoft';
import { airbnbEnvironment } from '../../helpers/airbnb';
import { bookingEnvironment } from '../../helpers/booking';
import { microsoftEnvironment } from '../../helpers/microsoft';
import { startTestPlatform, type TestPlatform } from '../../helpers/platform';
import type { SimulatedClock } from '../../helpers/temporal';

const DAY_SECONDS = 24 * 3600;

/**
 * A scenario's platform on the time-skipping server: its activities and its api-server take now to be
 * the simulated time its fakes see. Syncs run once a day, so in the scenario's simulated hours the
 * providers see token calls (whose faults it counts) and little else; the api-server logs at debug
 * level for the secret scan to read.
 */
export function startPlatformOnSimulatedClock(clock: SimulatedClock, options: Omit<Parameters<typeof startTestPlatform>[0], 'clock' | 'serverClock'>): Promise<TestPlatform> {
  return startTestPlatform({
    ...options,
    clock: clock.activityClock,
    serverClock: () => new Date(clock.now()),
    environment: {
      LOG_LEVEL: 'debug',
      GOOGLE_CALENDAR_SYNC_INTERVAL_SECONDS: String(DAY_SECONDS),
      MICROSOFT_CALENDAR_SYNC_INTERVAL_SECONDS: String(DAY_SECONDS),
      AIRBNB_RESERVATION_SYNC_INTERVAL_SECONDS: String(DAY_SECONDS),
      ...options.environment,
    },
  });
}

/** The settings that point a platform at the fakes of Microsoft, Airbnb and Booking.com (polled once a day, as the syncs run). */
export function fakeProvidersEnvironment(fakes: { microsoft: FakeMicrosoft; airbnb: FakeAirbnb; booking: FakeBooking }): Record<string, string> {
  return {
    ...microsoftEnvironment(fakes.microsoft),
    ...airbnbEnvironment(fakes.airbnb),
    ...bookingEnvironment(fakes.booking, { pollIntervalSeconds: DAY_SECONDS, ackPauseMs: 0 }),
  };
}
