import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';
import { z } from 'zod';
import type { ReservationRecord } from '../../db/queries/reservations';
import { ProviderError } from './provider-error';

/**
 * The OTA 2003B messages of Booking.com's two reservation queues: what a poll returns (an `…RQ` of
 * reservations) and the `…RS` that acknowledges them. New reservations and modifications/cancellations
 * have the same content under different element names.
 */
export type OtaQueue = 'reservations' | 'modifications';

export const OTA_QUEUES: Record<OtaQueue, { path: string; request: string; response: string; list: string; item: string }> = {
  reservations: { path: 'OTA_HotelResNotif', request: 'OTA_HotelResNotifRQ', response: 'OTA_HotelResNotifRS', list: 'HotelReservations', item: 'HotelReservation' },
  modifications: {
    path: 'OTA_HotelResModifyNotif',
    request: 'OTA_HotelResModifyNotifRQ',
    response: 'OTA_HotelResModifyNotifRS',
    list: 'HotelResModifies',
    item: 'HotelResModify',
  },
};

const OTA_NAMESPACE = 'http://www.opentravel.org/OTA/2003/05';
const OTA_VERSION = '2.001';
const REPEATED_ELEMENTS = new Set(['HotelReservation', 'HotelResModify', 'RoomStay', 'ResGuest', 'HotelReservationID', 'Error']);

// Values stay text: reservation ids and hotel codes are identifiers, not numbers (leading zeros matter).
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  removeNSPrefix: true,
  isArray: (name) => REPEATED_ELEMENTS.has(name),
});
const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: true });

const calendarDate = z.string().regex(/^\d{4}-\d{2}-\d{2}$/).refine((value) => !Number.isNaN(Date.parse(value)), 'is not a calendar date');
// Booking.com writes local-looking times (`2012-11-13T11:06:39`) that are UTC.
const timestamp = z
  .string()
  .datetime({ offset: true, local: true })
  .transform((value) => new Date(/(Z|[+-]\d{2}:?\d{2})$/.test(value) ? value : `${value}Z`));
const text = z.string().trim();

const roomStay = z.object({
  TimeSpan: z.object({ '@_Start': calendarDate, '@_End': calendarDate }).refine((span) => span['@_End'] >= span['@_Start'], 'ends before it starts'),
  BasicPropertyInfo: z.object({ '@_HotelCode': text.min(1) }),
});
const personName = z.object({ GivenName: text.optional(), Surname: text.optional() });
const resGuest = z.object({
  Profiles: z.object({ ProfileInfo: z.object({ Profile: z.object({ Customer: z.object({ PersonName: personName.optional() }) }) }) }).optional(),
});
const reservationMessage = z.object({
  '@_ResStatus': z.string().optional(),
  '@_LastModifyDateTime': timestamp.optional(),
  RoomStays: z.object({ RoomStay: z.array(roomStay).min(1) }),
  ResGuests: z.object({ ResGuest: z.array(resGuest) }).optional(),
  ResGlobalInfo: z.object({
    HotelReservationIDs: z.object({ HotelReservationID: z.array(z.object({ '@_ResID_Value': text.min(1), '@_ResID_Date': timestamp })).min(1) }),
  }),
});

const emptyAsObject = (value: unknown) => (value === '' || value === undefined ? {} : value);

/** A message left out of a batch: which reservation (when its id is readable) and what is wrong, never guest data. */
export interface SkippedReservation {
  reservationId: string | null;
  problem: string;
}

export interface PendingReservations {
  reservations: ReservationRecord[];
  skipped: SkippedReservation[];
}

/**
 * Reads one poll's answer. A document we cannot read at all (broken XML, another document) is a
 * protocol error. A single reservation without its id, hotel or dates is skipped instead: left
 * unacknowledged, Booking.com keeps it and after 30 minutes sends it to the property by email, while
 * the rest of the batch is stored and acknowledged rather than blocked behind it.
 */
export function readPendingReservations(queue: OtaQueue, xml: string): PendingReservations {
  const shape = OTA_QUEUES[queue];
  const root = parseDocument(xml)[shape.request];
  if (root === undefined) throw new ProviderError('protocol', `Booking.com answered without ${shape.request}${describeErrors(xml)}`);
  const batch = z
    .preprocess(emptyAsObject, z.object({ [shape.list]: z.preprocess(emptyAsObject, z.object({ [shape.item]: z.array(z.unknown()).default([]) })).default({}) }))
    .safeParse(root);
  if (!batch.success) {
    const problem = batch.error.issues[0]!;
    throw new ProviderError('protocol', `Booking.com ${shape.request} is incomplete at ${problem.path.join('/')}: ${problem.message}`);
  }
  const pending: PendingReservations = { reservations: [], skipped: [] };
  (batch.data[shape.list] as Record<string, unknown[]>)[shape.item]!.forEach((item, index) => {
    const read = readReservation(item);
    if (typeof read !== 'string') pending.reservations.push(read);
    else pending.skipped.push({ reservationId: readableReservationId(item), problem: `${shape.item} ${index + 1}: ${read}` });
  });
  return pending;
}

/** The record to store, or what keeps the message from being one (paths and rules only, no values). */
function readReservation(item: unknown): ReservationRecord | string {
  const parsed = reservationMessage.safeParse(item);
  if (!parsed.success) return parsed.error.issues.map((issue) => `${issue.path.join('/')}: ${issue.message}`).join('; ');
  const message = parsed.data;
  const [reservationId] = message.ResGlobalInfo.HotelReservationIDs.HotelReservationID;
  const stays = message.RoomStays.RoomStay;
  const hotelCodes = new Set(stays.map((stay) => stay.BasicPropertyInfo['@_HotelCode']));
  if (hotelCodes.size !== 1) return 'spans several hotels';
  const name = message.ResGuests?.ResGuest[0]?.Profiles?.ProfileInfo.Profile.Customer.PersonName;
  const guestName = [name?.GivenName, name?.Surname].filter(Boolean).join(' ');
  return {
    externalId: reservationId!['@_ResID_Value'],
    externalListingId: [...hotelCodes][0]!,
    status: /^cancel/i.test(message['@_ResStatus'] ?? '') ? 'cancelled' : 'confirmed',
    guestName: guestName || null,
    // A reservation of several rooms occupies the hotel from the first arrival to the last departure.
    checkIn: stays.map((stay) => stay.TimeSpan['@_Start']).sort()[0]!,
    checkOut: stays.map((stay) => stay.TimeSpan['@_End']).sort().at(-1)!,
    providerUpdatedAt: message['@_LastModifyDateTime'] ?? reservationId!['@_ResID_Date'],
  };
}

const readableId = z.object({
  ResGlobalInfo: z.object({ HotelReservationIDs: z.object({ HotelReservationID: z.array(z.object({ '@_ResID_Value': text.min(1) })).min(1) }) }),
});

/** Which reservation a skipped message is about, so that none of its messages is acknowledged. */
function readableReservationId(item: unknown): string | null {
  const parsed = readableId.safeParse(item);
  return parsed.success ? parsed.data.ResGlobalInfo.HotelReservationIDs.HotelReservationID[0]!['@_ResID_Value'] : null;
}

/** The `…RS` that tells Booking.com these reservations were processed, so it takes them off the queue. */
export function acknowledgementMessage(queue: OtaQueue, reservationIds: string[], now: Date): string {
  const shape = OTA_QUEUES[queue];
  const body = {
    [shape.response]: {
      '@_xmlns': OTA_NAMESPACE,
      '@_TimeStamp': now.toISOString(),
      '@_Target': 'Production',
      '@_Version': OTA_VERSION,
      Success: '',
      [shape.list]: {
        [shape.item]: reservationIds.map((id) => ({ ResGlobalInfo: { HotelReservationIDs: { HotelReservationID: { '@_ResID_Value': id } } } })),
      },
    },
  };
  return `<?xml version="1.0" encoding="UTF-8"?>${builder.build(body)}`;
}

/** Booking.com answers an acknowledgement with an `…RS` holding `<Success/>` or `<Errors>`. */
export function readAcknowledgementAnswer(queue: OtaQueue, xml: string): void {
  const shape = OTA_QUEUES[queue];
  const root: unknown = parseDocument(xml)[shape.response];
  if (typeof root !== 'object' || root === null || !('Success' in root)) {
    throw new ProviderError('protocol', `Booking.com did not confirm the acknowledgement${describeErrors(xml)}`);
  }
}

function parseDocument(xml: string): Record<string, unknown> {
  const validation = XMLValidator.validate(xml);
  if (validation !== true) {
    throw new ProviderError('protocol', `Booking.com sent malformed XML (line ${validation.err.line}: ${validation.err.msg})`);
  }
  return parser.parse(xml) as Record<string, unknown>;
}

const errorsDocument = z.record(
  z.object({ Errors: z.object({ Error: z.array(z.union([z.string(), z.object({ '#text': z.string().optional(), '@_ShortText': z.string().optional() })])) }) }).partial(),
);

/** The provider's own words from an `<Errors>` element, where there is one. */
function describeErrors(xml: string): string {
  const parsed = errorsDocument.safeParse(parser.parse(xml));
  if (!parsed.success) return '';
  const messages = Object.values(parsed.data)
    .flatMap((root) => root.Errors?.Error ?? [])
    .map((error) => (typeof error === 'string' ? error : (error['#text'] ?? error['@_ShortText'] ?? '')))
    .filter(Boolean);
  return messages.length > 0 ? `: ${messages.join('; ')}` : '';
}
