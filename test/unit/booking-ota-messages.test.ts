import { describe, expect, it } from 'vitest';
import { XMLParser } from 'fast-xml-parser';
import { acknowledgementMessage, readAcknowledgementAnswer, readPendingReservations } from '../../platform/providers/booking-ota-messages';
import { ProviderError } from '../../platform/providers/provider-error';

const OTA = 'xmlns="http://www.opentravel.org/OTA/2003/05" TimeStamp="2031-01-01T10:00:00+00:00" Target="Production" Version="2.001"';

function roomStay(start: string, end: string, hotel = '1234567'): string {
  return `<RoomStay IndexNumber="1"><TimeSpan Start="${start}" End="${end}"/><BasicPropertyInfo HotelCode="${hotel}"/></RoomStay>`;
}

function reservation(options: { attributes?: string; stays?: string; id?: string } = {}): string {
  const id = options.id ?? '4000000001';
  return `<HotelReservation ${options.attributes ?? ''}>
    <RoomStays>${options.stays ?? roomStay('2031-05-01', '2031-05-04')}</RoomStays>
    <ResGuests><ResGuest><Profiles><ProfileInfo><Profile><Customer><PersonName><GivenName>Ada</GivenName><Surname>Lovelace</Surname></PersonName></Customer></Profile></ProfileInfo></Profiles></ResGuest></ResGuests>
    <ResGlobalInfo><HotelReservationIDs><HotelReservationID ResID_Value="${id}" ResID_Date="2031-01-01T09:30:00"/></HotelReservationIDs></ResGlobalInfo>
  </HotelReservation>`;
}

const batch = (...reservations: string[]) => `<?xml version="1.0"?><OTA_HotelResNotifRQ ${OTA}><HotelReservations>${reservations.join('')}</HotelReservations></OTA_HotelResNotifRQ>`;

function protocolError(read: () => unknown): ProviderError {
  try {
    read();
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'protocol') return error;
    throw error;
  }
  throw new Error('expected a protocol error');
}

describe('Booking.com OTA messages', () => {
  it('reads a reservation: id, hotel, guest, dates, and a zone-less creation time as UTC', () => {
    expect(readPendingReservations('reservations', batch(reservation())).reservations).toEqual([
      {
        externalId: '4000000001',
        externalListingId: '1234567',
        status: 'confirmed',
        guestName: 'Ada Lovelace',
        checkIn: '2031-05-01',
        checkOut: '2031-05-04',
        providerUpdatedAt: new Date('2031-01-01T09:30:00Z'),
      },
    ]);
  });

  it('reads an empty queue, with or without the list element', () => {
    const empty = { reservations: [], skipped: [] };
    expect(readPendingReservations('reservations', `<OTA_HotelResNotifRQ ${OTA}><HotelReservations/></OTA_HotelResNotifRQ>`)).toEqual(empty);
    expect(readPendingReservations('modifications', `<OTA_HotelResModifyNotifRQ ${OTA}/>`)).toEqual(empty);
  });

  it('reads cancellations with their modification time, and a stay of several rooms from first arrival to last departure', () => {
    const xml = `<OTA_HotelResModifyNotifRQ ${OTA}><HotelResModifies>
      <HotelResModify ResStatus="Cancel" LastModifyDateTime="2031-02-01T12:00:00+02:00">
        <RoomStays>${roomStay('2031-05-03', '2031-05-06')}${roomStay('2031-05-01', '2031-05-04')}</RoomStays>
        <ResGlobalInfo><HotelReservationIDs><HotelReservationID ResID_Value="4000000002" ResID_Date="2031-01-01T09:30:00"/></HotelReservationIDs></ResGlobalInfo>
      </HotelResModify></HotelResModifies></OTA_HotelResModifyNotifRQ>`;
    expect(readPendingReservations('modifications', xml).reservations).toEqual([
      expect.objectContaining({ externalId: '4000000002', status: 'cancelled', guestName: null, checkIn: '2031-05-01', checkOut: '2031-05-06', providerUpdatedAt: new Date('2031-02-01T10:00:00Z') }),
    ]);
  });

  it('skips a reservation that lacks what is required, naming it without guest data, and reads the rest of the batch', () => {
    const read = (bad: string) => readPendingReservations('reservations', batch(reservation({ id: '4000000003' }), bad, reservation({ id: '4000000005' })));
    const cases: Array<[string, string | null, RegExp]> = [
      [reservation({ id: '4000000004', stays: '<RoomStay><TimeSpan Start="2031-05-01" End="2031-05-02"/></RoomStay>' }), '4000000004', /BasicPropertyInfo/],
      [reservation({ id: '4000000004', stays: roomStay('2031-05-04', '2031-05-01') }), '4000000004', /ends before it starts/],
      [reservation({ id: '4000000004', stays: roomStay('2031-05-01', '2031-05-04') + roomStay('2031-05-01', '2031-05-04', '99') }), '4000000004', /several hotels/],
      [reservation({ id: '' }), null, /ResID_Value/],
    ];
    for (const [bad, reservationId, problem] of cases) {
      const { reservations, skipped } = read(bad);
      expect(reservations.map((record) => record.externalId)).toEqual(['4000000003', '4000000005']);
      expect(skipped).toEqual([{ reservationId, problem: expect.stringMatching(problem) }]);
      expect(skipped[0]!.problem).toMatch(/^HotelReservation 2: /);
      expect(skipped[0]!.problem).not.toMatch(/Ada|Lovelace/);
    }
  });

  it('rejects broken XML and documents of another kind, with the provider\'s own error text', () => {
    expect(protocolError(() => readPendingReservations('reservations', batch(reservation()).slice(0, 200))).message).toMatch(/malformed XML/);
    const refusal = '<OTA_HotelResNotifRS Version="2.001"><Errors><Error Type="4" Code="401" ShortText="Authorization failed">Authorization failed</Error></Errors></OTA_HotelResNotifRS>';
    expect(protocolError(() => readPendingReservations('reservations', refusal)).message).toBe('Booking.com answered without OTA_HotelResNotifRQ: Authorization failed');
    expect(protocolError(() => readAcknowledgementAnswer('reservations', refusal)).message).toMatch(/did not confirm the acknowledgement: Authorization failed/);
    expect(() => readAcknowledgementAnswer('reservations', '<OTA_HotelResNotifRS Version="2.001"><Success/></OTA_HotelResNotifRS>')).not.toThrow();
  });

  it('acknowledges with <Success/> and one HotelReservationID per reservation', () => {
    const xml = acknowledgementMessage('modifications', ['1', '2'], new Date('2031-01-01T00:00:00Z'));
    const parsed = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' }).parse(xml);
    expect(parsed.OTA_HotelResModifyNotifRS).toMatchObject({
      Success: '',
      TimeStamp: '2031-01-01T00:00:00.000Z',
      HotelResModifies: {
        HotelResModify: [
          { ResGlobalInfo: { HotelReservationIDs: { HotelReservationID: { ResID_Value: '1' } } } },
          { ResGlobalInfo: { HotelReservationIDs: { HotelReservationID: { ResID_Value: '2' } } } },
        ],
      },
    });
  });
});
