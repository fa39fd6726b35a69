// The reservation queues of the fake Booking.com (fakes/booking.ts): what a property's channel
// manager has not acknowledged yet, as OTA 2003B XML. No HTTP here.
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';

export type FakeBookingQueue = 'reservations' | 'modifications';

export interface FakeReservationInput {
  hotelId: string;
  guest: { givenName: string; surname: string };
  checkIn: string;
  checkOut: string;
  /** The message lacks its hotel code, as a damaged reservation would; it stays queued until acknowledged. */
  incomplete?: boolean;
}

export interface FakeReservation extends FakeReservationInput {
  id: string;
  status: 'Book' | 'Modify' | 'Cancel';
  createdAt: number;
  modifiedAt: number;
}

export interface Acknowledgement {
  queue: FakeBookingQueue;
  reservationId: string;
  at: number;
}

interface QueuedMessage {
  reservation: FakeReservation;
  delivered: boolean;
}

const ELEMENTS: Record<FakeBookingQueue, { request: string; response: string; list: string; item: string }> = {
  reservations: { request: 'OTA_HotelResNotifRQ', response: 'OTA_HotelResNotifRS', list: 'HotelReservations', item: 'HotelReservation' },
  modifications: { request: 'OTA_HotelResModifyNotifRQ', response: 'OTA_HotelResModifyNotifRS', list: 'HotelResModifies', item: 'HotelResModify' },
};
const OTA_NAMESPACE = 'http://www.opentravel.org/OTA/2003/05';
const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: true });
const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', parseAttributeValue: false, removeNSPrefix: true });

// Booking.com writes reservation times without a zone (they are UTC).
const bookingTime = (ms: number) => new Date(ms).toISOString().slice(0, 19);

export class BookingReservationQueues {
  private readonly reservations = new Map<string, FakeReservation>();
  private readonly queues: Record<FakeBookingQueue, QueuedMessage[]> = { reservations: [], modifications: [] };
  private readonly acknowledgements: Acknowledgement[] = [];
  private nextId = 4_000_000_000 + Math.floor(Math.random() * 1_000_000) * 1000;

  constructor(
    private readonly clock: () => number,
    private readonly batchSize: number,
  ) {}

  add(input: FakeReservationInput): string {
    const now = this.clock();
    const reservation: FakeReservation = { ...input, guest: { ...input.guest }, id: String(this.nextId++), status: 'Book', createdAt: now, modifiedAt: now };
    this.reservations.set(reservation.id, reservation);
    this.queues.reservations.push({ reservation: { ...reservation }, delivered: false });
    return reservation.id;
  }

  modify(id: string, changes: Partial<FakeReservationInput>): void {
    const reservation = this.existing(id);
    Object.assign(reservation, changes, { status: 'Modify', modifiedAt: this.clock() });
    this.queues.modifications.push({ reservation: { ...reservation, guest: { ...reservation.guest } }, delivered: false });
  }

  cancel(id: string): void {
    const reservation = this.existing(id);
    Object.assign(reservation, { status: 'Cancel', modifiedAt: this.clock() });
    this.queues.modifications.push({ reservation: { ...reservation, guest: { ...reservation.guest } }, delivered: false });
  }

  /** Everything unacknowledged, oldest first, up to the batch size: Booking.com delivers until acknowledged. */
  poll(queue: FakeBookingQueue): { xml: string; reservationIds: string[] } {
    const batch = this.queues[queue].slice(0, this.batchSize);
    for (const message of batch) message.delivered = true;
    const { request, list, item } = ELEMENTS[queue];
    const body = {
      [request]: {
        '@_xmlns': OTA_NAMESPACE,
        '@_xmlns:xsi': 'http://www.w3.org/2001/XMLSchema-instance',
        '@_TimeStamp': new Date(this.clock()).toISOString(),
        '@_Target': 'Production',
        '@_Version': '2.001',
        [list]: batch.length === 0 ? '' : { [item]: batch.map((message) => reservationElement(queue, message.reservation)) },
      },
    };
    return { xml: `<?xml version="1.0" encoding="UTF-8"?>${builder.build(body)}`, reservationIds: batch.map((message) => message.reservation.id) };
  }

  /** Removes the delivered messages the `…RS` names; undefined when the body is not a successful `…RS`. */
  acknowledge(queue: FakeBookingQueue, xml: string): string[] | undefined {
    if (XMLValidator.validate(xml) !== true) return undefined;
    const { response, list, item } = ELEMENTS[queue];
    const root = (parser.parse(xml) as Record<string, Record<string, unknown> | undefined>)[response];
    if (!root || !('Success' in root)) return undefined;
    const items = asArray((root[list] as Record<string, unknown> | undefined)?.[item]);
    const ids = items.flatMap((entry) => asArray(path(entry, 'ResGlobalInfo', 'HotelReservationIDs', 'HotelReservationID'))).map((id) => path(id, '@_ResID_Value'));
    if (ids.length === 0 || ids.some((id) => typeof id !== 'string')) return undefined;
    const acknowledged = new Set(ids as string[]);
    const now = this.clock();
    this.queues[queue] = this.queues[queue].filter((message) => {
      const removed = message.delivered && acknowledged.has(message.reservation.id);
      if (removed) this.acknowledgements.push({ queue, reservationId: message.reservation.id, at: now });
      return !removed;
    });
    return [...acknowledged];
  }

  acknowledged(): Acknowledgement[] {
    return [...this.acknowledgements];
  }

  pending(queue: FakeBookingQueue): string[] {
    return this.queues[queue].map((message) => message.reservation.id);
  }

  private existing(id: string): FakeReservation {
    const reservation = this.reservations.get(id);
    if (!reservation) throw new Error(`the fake Booking.com has no reservation ${id}`);
    return reservation;
  }
}

function reservationElement(queue: FakeBookingQueue, reservation: FakeReservation): object {
  return {
    ...(queue === 'modifications' ? { '@_ResStatus': reservation.status, '@_LastModifyDateTime': `${bookingTime(reservation.modifiedAt)}+00:00` } : {}),
    RoomStays: {
      RoomStay: {
        '@_IndexNumber': '1',
        RoomTypes: { RoomType: { '@_RoomTypeCode': `${reservation.hotelId}01`, RoomDescription: { '@_Name': 'Double Room' } } },
        TimeSpan: { '@_Start': reservation.checkIn, '@_End': reservation.checkOut },
        Total: { '@_AmountAfterTax': '240.00', '@_CurrencyCode': 'EUR' },
        ...(reservation.incomplete ? {} : { BasicPropertyInfo: { '@_HotelCode': reservation.hotelId } }),
      },
    },
    ResGuests: {
      ResGuest: { Profiles: { ProfileInfo: { Profile: { Customer: { PersonName: { GivenName: reservation.guest.givenName, Surname: reservation.guest.surname } } } } } },
    },
    ResGlobalInfo: { HotelReservationIDs: { HotelReservationID: { '@_ResID_Value': reservation.id, '@_ResID_Date': bookingTime(reservation.createdAt) } } },
  };
}

function asArray(value: unknown): unknown[] {
  if (value === undefined || value === '') return [];
  return Array.isArray(value) ? value : [value];
}

function path(value: unknown, ...keys: string[]): unknown {
  let current = value;
  for (const key of keys) current = typeof current === 'object' && current !== null ? (current as Record<string, unknown>)[key] : undefined;
  return current;
}
