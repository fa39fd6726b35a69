import { sql } from 'slonik';
import { z } from 'zod';
import { startFakeAirbnb, type FakeAirbnb } from '../../fakes/airbnb';
import type { TestPlatform } from './platform';

export const AIRBNB_TEST_CLIENT = { clientId: 'd3b07384d113edec49eaa6238ad5ff00', clientSecret: 'airbnb-test-client-secret-value' };
export const AIRBNB_WEBHOOK_SECRET = 'airbnb-partner-webhook-signing-secret';

/** A fake Airbnb that signs its webhooks with the secret `airbnbEnvironment` gives the platform. */
export function startTestAirbnb(clock?: () => number): Promise<FakeAirbnb> {
  return startFakeAirbnb({ ...AIRBNB_TEST_CLIENT, ...(clock ? { clock } : {}), webhook: { secret: AIRBNB_WEBHOOK_SECRET } });
}

/** What startTestPlatform needs in `environment` to talk to the fake Airbnb. */
export function airbnbEnvironment(airbnb: FakeAirbnb, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    AIRBNB_CLIENT_ID: AIRBNB_TEST_CLIENT.clientId,
    AIRBNB_CLIENT_SECRET: AIRBNB_TEST_CLIENT.clientSecret,
    AIRBNB_AUTHORIZE_URL: airbnb.authorizeUrl,
    AIRBNB_API_URL: airbnb.apiUrl,
    AIRBNB_WEBHOOK_SECRET: AIRBNB_WEBHOOK_SECRET,
    ...overrides,
  };
}

/** What a browser does: follow our redirect to the fake Airbnb, which approves at once, then back to our callback. */
export async function connectAirbnb(platform: TestPlatform, sessionToken: string) {
  const auth = await fetch(`${platform.apiUrl}/api/v1/integrations/airbnb/auth`, { headers: { authorization: `Bearer ${sessionToken}` }, redirect: 'manual' });
  if (auth.status !== 302) throw new Error(`auth answered ${auth.status}: ${await auth.text()}`);
  const authorizeUrl = new URL(auth.headers.get('location')!);
  const consent = await fetch(authorizeUrl, { redirect: 'manual' });
  if (consent.status !== 302) throw new Error(`fake Airbnb answered ${consent.status}: ${await consent.text()}`);
  const callbackUrl = consent.headers.get('location')!;
  const callback = await fetch(callbackUrl, { headers: { authorization: `Bearer ${sessionToken}` } });
  const { connectionId, workflowId } = (await callback.json()) as { connectionId: string; workflowId: string };
  return { authorizeUrl, callbackUrl, status: callback.status, connectionId, workflowId };
}

/** An authenticated JSON request to the api-server. */
export async function apiRequest(platform: TestPlatform, sessionToken: string, method: 'GET' | 'PUT' | 'POST', path: string, body?: object) {
  const response = await fetch(`${platform.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${sessionToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export function createProperty(platform: TestPlatform, ownerUserId: string, name: string): Promise<string> {
  return platform.db.oneFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO properties (owner_user_id, name) VALUES (${ownerUserId}, ${name}) RETURNING id`);
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

/** Every stored Airbnb reservation of a connection, by confirmation code (a duplicate would show as a second row). */
export function storedAirbnbReservations(platform: TestPlatform, connectionId: string) {
  return platform.db.any(sql.type(storedReservation)`
    SELECT external_id AS "externalId", external_listing_id AS "externalListingId", property_id AS "propertyId", status,
           guest_name AS "guestName", to_char(check_in, 'YYYY-MM-DD') AS "checkIn", to_char(check_out, 'YYYY-MM-DD') AS "checkOut"
    FROM reservations WHERE provider = 'airbnb' AND connection_id = ${connectionId} ORDER BY external_id`);
}

export function auditTrail(platform: TestPlatform, where: { connectionId: string } | { provider: string }) {
  const condition = 'connectionId' in where ? sql.fragment`connection_id = ${where.connectionId}` : sql.fragment`provider = ${where.provider}`;
  return platform.db.any(sql.type(z.object({ action: z.string(), outcome: z.string(), actorType: z.string(), details: z.record(z.unknown()) }))`
    SELECT action, outcome, actor_type AS "actorType", details FROM audit_log WHERE ${condition} ORDER BY id`);
}
