import { setTimeout as sleep } from 'node:timers/promises';
import { log } from '@temporalio/activity';
import { upsertReservation, type ReservationRecord } from '../../db/queries/reservations';
import type { SyncCounts } from '../../db/queries/sync';
import type { BookingSettings } from '../config';
import type { OtaQueue } from './booking-ota-messages';
import { BookingOtaClient } from './booking-ota';
import type { ConnectionContext, ProviderFeatures, SubscriptionPlan } from './features';
import { ProviderError } from './provider-error';

/** New reservations first, so a modification never arrives for a reservation not yet stored. */
const QUEUE_ORDER: OtaQueue[] = ['reservations', 'modifications'];
/**
 * Bounds one sync run. A queue still delivering after this many acknowledged batches is most likely not
 * taking our acknowledgements, so the run ends as a protocol error; anything left waits for the next run.
 */
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
    this.ota = new BookingOtaClient(settings.xmlUrl, settings.requestTimeoutMs);
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
      const { reservations, skipped } = await this.ota.pendingReservations(queue, context.accessToken);
      for (const { reservationId, problem } of skipped) {
        log.warn('Booking.com reservation skipped: left unacknowledged for Booking.com to email to the property', { connectionId: context.connection.id, queue, reservationId, problem });
      }
      const { stored, failure } = await storeEach(context, reservations, counts);
      // Acknowledging an id takes every message of it off the queue, the skipped one too.
      const skippedIds = new Set(skipped.map((skip) => skip.reservationId));
      const acknowledgeable = stored.filter((id) => !skippedIds.has(id));
      if (acknowledgeable.length > 0) {
        await this.ota.acknowledge(queue, context.accessToken, acknowledgeable, context.clock());
        await context.audit.record({
          action: 'ReservationAcknowledge',
          outcome: 'success',
          actor: { type: 'system' },
          userId: context.connection.userId,
          provider: context.connection.provider,
          connectionId: context.connection.id,
          details: { queue, count: acknowledgeable.length, reservationIds: acknowledgeable, ...(skipped.length > 0 ? { skipped: skipped.length } : {}) },
        });
        context.heartbeat(`acknowledged ${acknowledgeable.length} ${queue}`);
        // protocols.md: Booking.com asks for a 5 s pause after an acknowledgement before the next request.
        await sleep(this.settings.ackPauseMs);
      }
      if (failure) throw failure;
      // What was not acknowledged is delivered again: another poll now would only read it once more.
      if (acknowledgeable.length === 0) return;
    }
    throw new ProviderError('protocol', `Booking.com still delivered ${queue} after ${MAX_BATCHES_PER_QUEUE} acknowledged batches in one run`);
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
