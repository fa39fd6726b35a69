import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import { sql, type DatabasePool } from 'slonik';
import { createDatabasePool } from '../../db/pool';
import { migrate } from '../../db/migrate';
import { findOrCreateLiveConnection } from '../../db/queries/connections';
import { listReservations, upsertReservation, type ReservationRecord } from '../../db/queries/reservations';
import { claimSyncRun, finishSyncRun } from '../../db/queries/sync';
import { createTestDatabase, type TestDatabase } from '../helpers/database';

const MINUTE = 60_000;

/** The storage rules every provider's sync relies on, against real Postgres. */
describe('provider data in Postgres', () => {
  let database: TestDatabase;
  let db: DatabasePool;

  beforeAll(async () => {
    database = await createTestDatabase(inject('databaseUrl'));
    await migrate(database.url);
    db = await createDatabasePool(database.url, { maximumPoolSize: 4 });
  });

  afterAll(async () => {
    await db?.end();
    await database?.drop();
  });

  async function liveConnection(provider: string) {
    const userId = await db.oneFirst(sql.unsafe`
      INSERT INTO users (email, display_name, password_hash) VALUES (${`${randomUUID()}@example.com`}, 'Host', 'x') RETURNING id`);
    const connection = await findOrCreateLiveConnection(db, String(userId), provider);
    await db.query(sql.unsafe`UPDATE integration_connections SET status = 'active' WHERE id = ${connection.id}`);
    return connection.id;
  }

  it('lets one sync run at a time per connection, and takes over a run abandoned past its lease', async () => {
    const connectionId = await liveConnection('airbnb');
    const start = new Date('2031-01-01T00:00:00Z');
    const first = await claimSyncRun(db, connectionId, 'scheduled', start, 16 * MINUTE);
    expect(first).not.toBeNull();
    expect(await claimSyncRun(db, connectionId, 'webhook', new Date(start.getTime() + MINUTE), 16 * MINUTE)).toBeNull();
    // Another connection is not held up.
    expect(await claimSyncRun(db, await liveConnection('airbnb'), 'scheduled', start, 16 * MINUTE)).not.toBeNull();

    const later = await claimSyncRun(db, connectionId, 'scheduled', new Date(start.getTime() + 17 * MINUTE), 16 * MINUTE);
    expect(later).not.toBeNull();
    expect(await db.one(sql.unsafe`SELECT outcome, error_kind AS "errorKind" FROM sync_runs WHERE id = ${first}`)).toEqual({ outcome: 'failed', errorKind: 'abandoned' });

    await finishSyncRun(db, later!, { outcome: 'succeeded', counts: { created: 0, updated: 0, deleted: 0, fullResync: false }, finishedAt: new Date(start.getTime() + 18 * MINUTE) });
    expect(await claimSyncRun(db, connectionId, 'scheduled', new Date(start.getTime() + 19 * MINUTE), 16 * MINUTE)).not.toBeNull();
  });

  it('keeps a reservation with the connection that stored it while that one lives, even when another connection of the same account reports it', async () => {
    const [mine, theirs] = [await liveConnection('airbnb'), await liveConnection('airbnb')];
    const reservation: ReservationRecord = {
      externalId: `HM${randomUUID().slice(0, 8)}`,
      externalListingId: '12345',
      status: 'confirmed',
      guestName: 'Ada',
      checkIn: '2031-07-01',
      checkOut: '2031-07-05',
      providerUpdatedAt: new Date('2031-06-01T00:00:00Z'),
    };
    expect(await upsertReservation(db, mine, 'airbnb', reservation)).toBe('created');
    expect(await upsertReservation(db, theirs, 'airbnb', { ...reservation, providerUpdatedAt: new Date('2031-06-02T00:00:00Z') })).toBe('unchanged');
    expect((await listReservations(db, mine)).map((row) => row.externalId)).toEqual([reservation.externalId]);
    expect(await listReservations(db, theirs)).toEqual([]);

    // A cancellation through the owning connection applies; an older report afterwards does not undo it.
    expect(await upsertReservation(db, mine, 'airbnb', { ...reservation, status: 'cancelled', providerUpdatedAt: new Date('2031-06-03T00:00:00Z') })).toBe('updated');
    expect(await upsertReservation(db, mine, 'airbnb', reservation)).toBe('unchanged');
    expect((await listReservations(db, mine))[0]!.status).toBe('cancelled');

    // Once the first connection is gone, the other takes the reservation over.
    await db.query(sql.unsafe`UPDATE integration_connections SET status = 'disconnected' WHERE id = ${mine}`);
    expect(await upsertReservation(db, theirs, 'airbnb', { ...reservation, status: 'cancelled', providerUpdatedAt: new Date('2031-06-04T00:00:00Z') })).toBe('updated');
    expect((await listReservations(db, theirs)).map((row) => row.externalId)).toEqual([reservation.externalId]);
  });
});
