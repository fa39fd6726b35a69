import { setTimeout as sleep } from 'node:timers/promises';
import { upsertReservation, type ReservationRecord } from '../../db/queries/reservations';
import type { SyncCounts } from '../../db/queries/sync';
import type { BookingSettings } from '../config';
import type { OtaQueue } from './booking-ota-messages';
import { BookingOtaClient } from './booking-ota';
import type { ConnectionContext, ProviderFeatures, SubscriptionPlan } from './features';

/** New reservations first, so a modification never arrives for a reservation not yet stored. */
const QUEUE_ORDER: OtaQueue[] = ['reservations', 'modifications'];
/** Bounds one sync run; whatever is left waits for the next poll, which comes within the poll interval. */
const MAX_BATCHES_PER_QUEUE = 20;

/**
 * Booking.com's part of a connection: no webhooks, only the OTA reservation queues, polled on a
 * schedule (protocols.md: every 20 s). Each batch is stored first and only what was stored is then
 * acknowledged: Booking.com delivers anything unacknowledged again, so a failure anywhere loses nothing.
 * The hotel mapping is written by the connect endpoint, with the credentials.
 */
export class BookingReservationFeatures implements ProviderFeatures {
  readonly syncIntervalSeconds: number;
  private readonly ota: BookingOtaClient;

  constructor(private readonly settings: BookingSettings) {
    this.syncIntervalSeconds = settings.pollIntervalSeconds;
    this.ota = new BookingOtaClient(settings.xmlUrl);
  }

  async setUp(): Promise<SubscriptionPlan> {
    return { renewAt: null };
  }

  async renewSubscriptions(): Promise<SubscriptionPlan> {
    return { renewAt: null };
  }

  async stopSubscriptions(): Promise<void> {}

  async sync(context: ConnectionContext): Promise<SyncCounts> {
    const counts: SyncCounts = { created: 0, updated: 0, deleted: 0, fullResync: false };
    for (const queue of QUEUE_ORDER) await this.drain(context, queue, counts);
    return counts;
  }

  private async drain(context: ConnectionContext, queue: OtaQueue, counts: SyncCounts): Promise<void> {
    for (let batch = 0; batch < MAX_BATCHES_PER_QUEUE; batch++) {
      context.heartbeat(`polling ${queue}`);
      const reservations = await this.ota.pendingReservations(queue, context.accessToken);
      if (reservations.length === 0) return;
      const { stored, failure } = await storeEach(context, reservations, counts);
      if (stored.length > 0) {
        await this.ota.acknowledge(queue, context.accessToken, stored, context.clock());
        await context.audit.record({
          action: 'ReservationAcknowledge',
          outcome: 'success',
          actor: { type: 'system' },
          userId: context.connection.userId,
          provider: context.connection.provider,
          connectionId: context.connection.id,
          details: { queue, count: stored.length, reservationIds: stored },
        });
        context.heartbeat(`acknowledged ${stored.length} ${queue}`);
        // protocols.md: Booking.com asks for a 5 s pause after an acknowledgement before the next request.
        await sleep(this.settings.ackPauseMs);
      }
      if (failure) throw failure;
    }
  }
}

/** Stores in delivery order and stops at the first failure: the ids returned are exactly those now in the database. */
async function storeEach(
  context: ConnectionContext,
  reservations: ReservationRecord[],
  counts: SyncCounts,
): Promise<{ stored: string[]; failure: unknown }> {
  const stored = new Set<string>();
  for (const reservation of reservations) {
    try {
      const outcome = await upsertReservation(context.db, context.connection.id, context.connection.provider, reservation);
      if (outcome === 'created') counts.created += 1;
      else if (outcome === 'updated' && reservation.status === 'cancelled') counts.deleted += 1;
      else if (outcome === 'updated') counts.updated += 1;
      stored.add(reservation.externalId);
    } catch (error) {
      // An earlier message of the same reservation was stored, this later one was not: acknowledging the id would drop it.
      stored.delete(reservation.externalId);
      return { stored: [...stored], failure: error };
    }
  }
  return { stored: [...stored], failure: undefined };
}
