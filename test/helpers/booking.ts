import { sql } from 'slonik';
import { z } from 'zod';
import type { FakeBooking } from '../../fakes/booking';
import type { TestPlatform } from './platform';

export const BOOKING_TEST_ACCOUNT = { clientId: 'D0A1B2C3-5FC0-11EF-A860-0123456789AB', clientSecret: 'booking-machine-account-secret-value' };

/** The environment that points the platform at a fake Booking.com. */
export function bookingEnvironment(booking: FakeBooking, settings: { pollIntervalSeconds: number; ackPauseMs: number }): Record<string, string> {
  return {
    BOOKING_AUTH_URL: booking.authUrl,
    BOOKING_XML_URL: booking.xmlUrl,
    BOOKING_POLL_INTERVAL_SECONDS: String(settings.pollIntervalSeconds),
    BOOKING_ACK_PAUSE_MS: String(settings.ackPauseMs),
  };
}

/** What the PM app does when a user enters their machine account: POST the connect endpoint. */
export async function connectBooking(
  platform: TestPlatform,
  sessionToken: string,
  body: { clientId: string; clientSecret: string; hotelIds?: string[] } = BOOKING_TEST_ACCOUNT,
): Promise<{ status: number; body: Record<string, string> }> {
  const response = await fetch(`${platform.apiUrl}/api/v1/integrations/booking-com/connect`, {
    method: 'POST',
    headers: { authorization: `Bearer ${sessionToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, string> };
}

const storedReservation = z.object({
  externalId: z.string(),
  externalListingId: z.string(),
  propertyId: z.string().nullable(),
  status: z.string(),
  guestName: z.string().nullable(),
  checkIn: z.string(),
  checkOut: z.string(),
});

/** Every stored row of one Booking.com reservation (a duplicate would show as a second row). */
export function storedReservations(platform: TestPlatform, externalId: string) {
  return platform.db.any(sql.type(storedReservation)`
    SELECT external_id AS "externalId", external_listing_id AS "externalListingId", property_id AS "propertyId", status,
           guest_name AS "guestName", to_char(check_in, 'YYYY-MM-DD') AS "checkIn", to_char(check_out, 'YYYY-MM-DD') AS "checkOut"
    FROM reservations WHERE provider = 'booking-com' AND external_id = ${externalId}`);
}
