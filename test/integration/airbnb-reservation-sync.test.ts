import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startTemporalDevServer } from '../helpers/temporal';
import type { FakeAirbnb } from '../../fakes/airbnb';
import { startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { historyPayloadTexts } from '../helpers/history';
import { refreshNowUpdate, statusQuery, syncRequestSignal } from '../../workflows/connection-messages';
import { loadConfig } from '../../platform/config';
import { MAX_PAGES } from '../../platform/providers/airbnb-api';
import { AirbnbAdapter } from '../../platform/providers/airbnb';
import {
  AIRBNB_TEST_CLIENT,
  airbnbEnvironment,
  apiRequest,
  auditTrail,
  connectAirbnb,
  createProperty,
  startTestAirbnb,
  storedAirbnbReservations,
} from '../helpers/airbnb';

const LISTINGS_PATH = '/api/v1/integrations/airbnb/listings';

/**
 * Airbnb end to end on a real Temporal dev server, real Postgres and the fake Airbnb over HTTP: the
 * connect flow, the listing mapping the user reviews, the reservation sync that webhooks trigger
 * (created, altered, cancelled, a 410 on the cursor), and a disconnect that leaves nothing behind.
 */
describe('Airbnb reservation sync (dev server)', () => {
  let temporal: TestWorkflowEnvironment;
  let airbnb: FakeAirbnb;
  let platform: TestPlatform;
  let host: ReturnType<FakeAirbnb['createHost']>;
  let user: { userId: string; sessionToken: string };
  let connection: { connectionId: string; workflowId: string; callbackUrl: string };
  const properties: Record<string, string> = {};

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    airbnb = await startTestAirbnb();
    platform = await startTestPlatform({ temporal, environment: airbnbEnvironment(airbnb) });
  });

  afterAll(async () => {
    await platform?.close();
    await airbnb?.close();
    await temporal?.teardown();
  });

  const webhookUrl = () => `${platform.apiUrl}/api/v1/webhooks/airbnb`;
  const syncRuns = async () => (await platform.client.workflow.getHandle(connection.workflowId).query(statusQuery)).sync?.runCount ?? 0;
  /** Sends a signed event the way Airbnb would and waits for the sync it triggers. */
  async function notify(event: Parameters<FakeAirbnb['sendReservationEvent']>[0]) {
    const before = await syncRuns();
    const sent = await airbnb.sendReservationEvent(event);
    expect(sent.deliveries).toEqual([{ url: webhookUrl(), status: 200, body: { outcome: 'delivered' } }]);
    return waitForConnectionState(platform, connection.workflowId, (state) => (state.sync?.runCount ?? 0) > before && state.sync?.lastOutcome !== undefined);
  }
  const listing = (name: string) => host.listings.find((candidate) => candidate.name === name)!;
  const reservations = () => storedAirbnbReservations(platform, connection.connectionId);

  it('connects without PKCE, stores the grant encrypted with the host id, maps listings by name and runs a first sync', async () => {
    user = await platform.signUp('host@example.com');
    const other = await platform.signUp('neighbour@example.com');
    properties.seaside = await createProperty(platform, user.userId, 'Seaside Cottage');
    properties.cabin = await createProperty(platform, user.userId, 'Mountain Cabin');
    properties.foreign = await createProperty(platform, other.userId, 'Lake House');
    host = airbnb.createHost(['Seaside Cottage', 'Lake House', 'City Loft']);
    const early = airbnb.createReservation({ listingId: listing('Seaside Cottage').id, startDate: '2031-07-01', endDate: '2031-07-05', guestFirstName: 'Ada' });

    const connected = await connectAirbnb(platform, user.sessionToken);
    expect(connected.status).toBe(202);
    connection = connected;
    expect(Object.fromEntries(connected.authorizeUrl.searchParams)).toEqual({
      client_id: AIRBNB_TEST_CLIENT.clientId,
      redirect_uri: `${platform.apiUrl}/api/v1/integrations/airbnb/callback`,
      scope: 'vr',
      state: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
    });
    const state = await waitForConnectionState(platform, connection.workflowId, (s) => s.status === 'active' && (s.sync?.runCount ?? 0) >= 1);
    // expires_at is absolute: 24 h from the exchange, not a default lifetime.
    expect(state.accessTokenExpiresAt).toBeGreaterThan(Date.now() + 23.9 * 3600 * 1000);
    expect(state.accessTokenExpiresAt).toBeLessThanOrEqual(Date.now() + 24 * 3600 * 1000);
    expect(state.sync?.lastCounts).toEqual({ created: 1, updated: 0, deleted: 0, fullResync: true });

    const stored = await platform.db.one(sql.type(z.object({ accountId: z.string().nullable(), refreshTokenEnc: z.string() }))`
      SELECT provider_account_id AS "accountId", refresh_token_enc AS "refreshTokenEnc" FROM integration_connections WHERE id = ${connection.connectionId}`);
    expect(stored.accountId).toBe(host.userId);
    expect(platform.crypto.decrypt(stored.refreshTokenEnc, { table: 'integration_connections', column: 'refresh_token_enc', rowId: connection.connectionId })).toBe(airbnb.liveRefreshTokens()[0]);
    for (const secret of airbnb.issuedSecrets()) expect(stored.refreshTokenEnc).not.toContain(secret);

    const mappings = await apiRequest(platform, user.sessionToken, 'GET', LISTINGS_PATH);
    expect(mappings).toEqual({
      status: 200,
      body: {
        connectionId: connection.connectionId,
        listings: [
          { listingId: String(listing('City Loft').id), listingName: 'City Loft', propertyId: null, propertyName: null, mappedBy: 'automatic', updatedAt: expect.any(String) },
          // The other user's "Lake House" is not a candidate.
          { listingId: String(listing('Lake House').id), listingName: 'Lake House', propertyId: null, propertyName: null, mappedBy: 'automatic', updatedAt: expect.any(String) },
          { listingId: String(listing('Seaside Cottage').id), listingName: 'Seaside Cottage', propertyId: properties.seaside, propertyName: 'Seaside Cottage', mappedBy: 'automatic', updatedAt: expect.any(String) },
        ],
      },
    });
    expect(await reservations()).toEqual([
      { externalId: early.confirmation_code, externalListingId: String(listing('Seaside Cottage').id), propertyId: properties.seaside, status: 'confirmed', guestName: 'Ada', checkIn: '2031-07-01', checkOut: '2031-07-05' },
    ]);
    expect(airbnb.liveSubscriptions()).toEqual([
      { id: expect.any(Number), userId: host.userId, url: webhookUrl(), events: ['reservation.created', 'reservation.updated', 'reservation.cancelled'] },
    ]);
    const actions = (await auditTrail(platform, { connectionId: connection.connectionId })).map((row) => row.action);
    expect(actions).toEqual(['IntegrationConnect', 'ListingMappingChange', 'ListingMappingChange', 'ListingMappingChange', 'WebhookSubscriptionCreate']);
  });

  it('syncs a new reservation when Airbnb says so, and moves it with the mapping the user chooses', async () => {
    const loft = String(listing('City Loft').id);
    const booked = airbnb.createReservation({ listingId: Number(loft), startDate: '2031-08-10', endDate: '2031-08-12', guestFirstName: 'Grace' });
    const state = await notify({ userId: host.userId, type: 'reservation.created', confirmationCode: booked.confirmation_code });
    expect(state.sync?.lastCounts).toEqual({ created: 1, updated: 0, deleted: 0, fullResync: false });
    expect((await reservations()).find((row) => row.externalId === booked.confirmation_code)).toMatchObject({ propertyId: null, status: 'confirmed' });

    const chosen = await apiRequest(platform, user.sessionToken, 'PUT', `${LISTINGS_PATH}/${loft}`, { propertyId: properties.cabin });
    expect(chosen).toEqual({
      status: 200,
      body: { listingId: loft, listingName: 'City Loft', propertyId: properties.cabin, propertyName: 'Mountain Cabin', mappedBy: 'user', updatedAt: expect.any(String) },
    });
    expect((await reservations()).find((row) => row.externalId === booked.confirmation_code)?.propertyId).toBe(properties.cabin);
    expect((await auditTrail(platform, { connectionId: connection.connectionId })).at(-1)).toEqual({
      action: 'ListingMappingChange',
      outcome: 'success',
      actorType: 'user',
      details: { listingId: loft, propertyId: properties.cabin, previousPropertyId: null, mappedBy: 'user', remappedReservations: 1 },
    });
  });

  it("refuses another user's property, an unknown listing and a malformed id, and changes nothing", async () => {
    const loft = String(listing('City Loft').id);
    const before = { mappings: await apiRequest(platform, user.sessionToken, 'GET', LISTINGS_PATH), reservations: await reservations() };

    expect(await apiRequest(platform, user.sessionToken, 'PUT', `${LISTINGS_PATH}/${loft}`, { propertyId: properties.foreign })).toEqual({
      status: 404,
      body: { error: 'unknown_property', message: expect.any(String) },
    });
    expect(await apiRequest(platform, user.sessionToken, 'PUT', `${LISTINGS_PATH}/999999999`, { propertyId: properties.cabin })).toMatchObject({ status: 404, body: { error: 'unknown_listing' } });
    expect(await apiRequest(platform, user.sessionToken, 'PUT', `${LISTINGS_PATH}/${loft}`, { propertyId: 'not-a-uuid' })).toMatchObject({ status: 400 });
    expect(await apiRequest(platform, user.sessionToken, 'PUT', `${LISTINGS_PATH}/${loft}`, {})).toMatchObject({ status: 400 });
    const stranger = await platform.signUp('stranger@example.com');
    expect(await apiRequest(platform, stranger.sessionToken, 'PUT', `${LISTINGS_PATH}/${loft}`, { propertyId: null })).toMatchObject({ status: 404, body: { error: 'not_connected' } });

    expect(await apiRequest(platform, user.sessionToken, 'GET', LISTINGS_PATH)).toEqual(before.mappings);
    expect(await reservations()).toEqual(before.reservations);
    const refusals = (await auditTrail(platform, { connectionId: connection.connectionId })).filter((row) => row.outcome === 'failure');
    expect(refusals.map((row) => row.details)).toEqual([
      { listingId: loft, reason: 'foreign_property' },
      { listingId: '999999999', reason: 'unknown_listing' },
    ]);
  });

  it('syncs an alteration and a cancellation, each on its webhook', async () => {
    const [loftBooking] = (await reservations()).filter((row) => row.externalListingId === String(listing('City Loft').id));
    airbnb.alterReservation(loftBooking!.externalId, { startDate: '2031-08-11', endDate: '2031-08-15' });
    let state = await notify({ userId: host.userId, type: 'reservation.updated', confirmationCode: loftBooking!.externalId });
    expect(state.sync?.lastCounts).toEqual({ created: 0, updated: 1, deleted: 0, fullResync: false });
    expect((await reservations()).find((row) => row.externalId === loftBooking!.externalId)).toMatchObject({ status: 'confirmed', checkIn: '2031-08-11', checkOut: '2031-08-15' });

    const [seasideBooking] = (await reservations()).filter((row) => row.propertyId === properties.seaside);
    airbnb.cancelReservation(seasideBooking!.externalId);
    // An event that names only the listing finds the connection through the mapping.
    state = await notify({ userId: '1', type: 'reservation.cancelled', listingId: Number(seasideBooking!.externalListingId), url: webhookUrl() });
    expect(state.sync?.lastCounts).toEqual({ created: 0, updated: 0, deleted: 1, fullResync: false });
    expect((await reservations()).find((row) => row.externalId === seasideBooking!.externalId)?.status).toBe('cancelled');
  });

  it('maps a listing the host added later before storing its first reservation', async () => {
    properties.garden = await createProperty(platform, user.userId, 'Garden Studio');
    const studio = airbnb.addListing(host.userId, 'Garden Studio');
    const booked = airbnb.createReservation({ listingId: studio.id, startDate: '2031-09-01', endDate: '2031-09-03' });
    await notify({ userId: host.userId, type: 'reservation.created', confirmationCode: booked.confirmation_code });
    expect((await reservations()).find((row) => row.externalId === booked.confirmation_code)).toMatchObject({ propertyId: properties.garden, guestName: null });
    const mappings = (await apiRequest(platform, user.sessionToken, 'GET', LISTINGS_PATH)).body.listings as Array<Record<string, unknown>>;
    expect(mappings.map((row) => [row.listingName, row.propertyId, row.mappedBy])).toEqual([
      ['City Loft', properties.cabin, 'user'],
      ['Garden Studio', properties.garden, 'automatic'],
      ['Lake House', null, 'automatic'],
      ['Seaside Cottage', properties.seaside, 'automatic'],
    ]);
  });

  it('reads everything again when Airbnb answers 410 for the cursor, without a duplicate, and keeps the user mapping on re-consent', async () => {
    const before = await reservations();
    airbnb.switches.expireCursors();
    const state = await notify({ userId: host.userId, type: 'reservation.updated' });
    expect(state.sync?.lastOutcome).toBe('succeeded');
    expect(state.sync?.lastCounts).toEqual({ created: 0, updated: 0, deleted: 0, fullResync: true });
    expect(await reservations()).toEqual(before);
    expect(airbnb.calls.filter((call) => call.endpoint === 'reservations' && call.status === 410)).toHaveLength(1);

    // Re-consent runs the setup again: the user's choice and the live subscription both stay.
    const again = await connectAirbnb(platform, user.sessionToken);
    expect(again).toMatchObject({ status: 202, connectionId: connection.connectionId });
    await waitForConnectionState(platform, connection.workflowId, (s) => s.status === 'active' && s.setUpDueAt === undefined && (s.sync?.runCount ?? 0) > (state.sync?.runCount ?? 0));
    const loft = (await apiRequest(platform, user.sessionToken, 'GET', LISTINGS_PATH)).body.listings as Array<Record<string, unknown>>;
    expect(loft.find((row) => row.listingName === 'City Loft')).toMatchObject({ propertyId: properties.cabin, mappedBy: 'user' });
    expect(airbnb.liveSubscriptions()).toHaveLength(1);
  });

  it('subscribes again when Airbnb dropped the subscription', async () => {
    airbnb.switches.dropSubscriptions();
    const before = await syncRuns();
    await platform.client.workflow.getHandle(connection.workflowId).signal(syncRequestSignal, { reason: 'operator', full: false });
    await waitForConnectionState(platform, connection.workflowId, (s) => (s.sync?.runCount ?? 0) > before);
    expect(airbnb.liveSubscriptions()).toHaveLength(1);
    const subscriptions = await platform.db.any(sql.type(z.object({ status: z.string() }))`
      SELECT status FROM webhook_subscriptions WHERE connection_id = ${connection.connectionId} ORDER BY created_at`);
    expect(subscriptions.map((row) => row.status)).toEqual(['stopped', 'active']);
  });

  it('gives up on a listings or reservations read that never ends, with a protocol error, and syncs again once Airbnb pages properly', { timeout: 120_000 }, async () => {
    const handle = platform.client.workflow.getHandle(connection.workflowId);
    // A reservation on a listing not mapped yet makes the sync read the listings too.
    const annex = airbnb.addListing(host.userId, 'Harbour Annex');
    const booked = airbnb.createReservation({ listingId: annex.id, startDate: '2031-10-01', endDate: '2031-10-04' });
    for (const endpoint of ['reservations', 'listings'] as const) {
      airbnb.switches.endlessPages = endpoint;
      const since = airbnb.calls.length;
      const lastRunAt = (await handle.query(statusQuery)).sync?.lastRunAt ?? 0;
      await handle.signal(syncRequestSignal, { reason: 'operator', full: false });
      const state = await waitForConnectionState(platform, connection.workflowId, (s) => (s.sync?.lastRunAt ?? 0) > lastRunAt, 90_000);
      expect(state.sync).toMatchObject({ lastOutcome: 'failed', lastError: { message: `Airbnb ${endpoint} read did not end within ${MAX_PAGES} pages` } });
      expect(airbnb.calls.slice(since).filter((call) => call.endpoint === endpoint)).toHaveLength(MAX_PAGES);
    }
    airbnb.switches.endlessPages = false;
    expect((await reservations()).some((row) => row.externalId === booked.confirmation_code)).toBe(false);

    const runsBefore = await syncRuns();
    await handle.signal(syncRequestSignal, { reason: 'operator', full: false });
    const state = await waitForConnectionState(platform, connection.workflowId, (s) => (s.sync?.runCount ?? 0) > runsBefore);
    expect(state.sync).toMatchObject({ lastOutcome: 'succeeded', lastCounts: { created: 1 } });
    expect((await reservations()).find((row) => row.externalId === booked.confirmation_code)).toMatchObject({ externalListingId: String(annex.id) });
  });

  it('loses nothing when the answer to a refresh was lost: Airbnb is never asked to rotate, so the retry presents a token that still works', async () => {
    const handle = platform.client.workflow.getHandle(connection.workflowId);
    const before = await handle.query(statusQuery);
    const refreshToken = async () =>
      platform.crypto.decrypt(
        await platform.db.oneFirst(sql.type(z.object({ token: z.string() }))`SELECT refresh_token_enc AS token FROM integration_connections WHERE id = ${connection.connectionId}`),
        { table: 'integration_connections', column: 'refresh_token_enc', rowId: connection.connectionId },
      );
    const presented = await refreshToken();
    // Airbnb answers, but the answer never reaches our compare-and-set write (the worker died).
    const config = loadConfig({ APP_ENV: 'test', ...airbnbEnvironment(airbnb) });
    await new AirbnbAdapter(config.airbnb, config.airbnb.credentials!).refresh(presented);
    expect(airbnb.liveRefreshTokens()).toContain(presented);

    const since = airbnb.calls.length;
    const answer = await handle.executeUpdate(refreshNowUpdate);
    expect(answer.tokenVersion).toBeGreaterThan(before.tokenVersion);
    expect(await handle.query(statusQuery)).toMatchObject({ status: 'active', tokenVersion: answer.tokenVersion });
    expect(airbnb.calls.slice(since)).toEqual([expect.objectContaining({ endpoint: 'token', grant: 'refresh', rotated: false, status: 200 })]);
    expect(await refreshToken()).toBe(presented);
    expect(airbnb.liveRefreshTokens()).toContain(presented);
  });

  it('disconnects: revoked at Airbnb, subscription deleted there, no token left, an audit trail, and no secret in history', async () => {
    const handle = platform.client.workflow.getHandle(connection.workflowId);
    const sealed = await platform.db.oneFirst(sql.type(z.object({ token: z.string() }))`
      SELECT refresh_token_enc AS token FROM integration_connections WHERE id = ${connection.connectionId}`);
    const refreshToken = platform.crypto.decrypt(sealed, { table: 'integration_connections', column: 'refresh_token_enc', rowId: connection.connectionId });
    expect(airbnb.liveRefreshTokens()).toContain(refreshToken);
    const disconnect = await apiRequest(platform, user.sessionToken, 'POST', '/api/v1/integrations/airbnb/disconnect');
    expect(disconnect.status).toBe(202);
    expect(await handle.result()).toEqual({ status: 'disconnected', revocation: 'revoked' });

    expect(airbnb.calls.filter((call) => call.endpoint === 'revoke')).toEqual([expect.objectContaining({ status: 200 })]);
    expect(airbnb.liveRefreshTokens()).not.toContain(refreshToken);
    expect(airbnb.liveSubscriptions()).toEqual([]);
    const stored = await platform.db.one(sql.type(z.object({ status: z.string(), accessTokenEnc: z.string().nullable(), refreshTokenEnc: z.string().nullable(), previousRefreshTokenEnc: z.string().nullable() }))`
      SELECT status, access_token_enc AS "accessTokenEnc", refresh_token_enc AS "refreshTokenEnc", previous_refresh_token_enc AS "previousRefreshTokenEnc"
      FROM integration_connections WHERE id = ${connection.connectionId}`);
    expect(stored).toEqual({ status: 'disconnected', accessTokenEnc: null, refreshTokenEnc: null, previousRefreshTokenEnc: null });
    const live = await platform.db.anyFirst(sql.type(z.object({ id: z.string() }))`
      SELECT id FROM webhook_subscriptions WHERE connection_id = ${connection.connectionId} AND status = 'active'`);
    expect(live).toEqual([]);
    const trail = (await auditTrail(platform, { connectionId: connection.connectionId })).slice(-3);
    expect(trail).toEqual([
      { action: 'WebhookSubscriptionStop', outcome: 'success', actorType: 'system', details: expect.objectContaining({ reason: 'disconnected', upstream: 'deleted' }) },
      { action: 'OAuthRevoke', outcome: 'success', actorType: 'user', details: { revocation: 'revoked', revokedTokenKind: 'refresh' } },
      { action: 'IntegrationDisconnect', outcome: 'success', actorType: 'user', details: { revocation: 'revoked' } },
    ]);

    // Airbnb may still send an event it had queued: acknowledged, nothing done.
    const late = await airbnb.sendReservationEvent({ userId: host.userId, url: webhookUrl() });
    expect(late.deliveries).toEqual([expect.objectContaining({ status: 200, body: { outcome: 'ignored' } })]);

    const callback = new URL(connection.callbackUrl);
    const texts = (await historyPayloadTexts(handle)).join('\n');
    expect(texts).toContain(connection.connectionId);
    for (const secret of [...airbnb.issuedSecrets(), callback.searchParams.get('state')!, user.sessionToken]) expect(texts).not.toContain(secret);
  });
});
