import { acknowledgementMessage, OTA_QUEUES, readAcknowledgementAnswer, readPendingReservations, type OtaQueue, type PendingReservations } from './booking-ota-messages';
import { providerFetch, ProviderError } from './provider-error';

const PROVIDER = 'Booking.com';

/**
 * Booking.com's OTA reservation queues over HTTP (shared/protocols.md): a GET returns what has not
 * been acknowledged yet, a POST of the matching `…RS` acknowledges. Authenticated with the 1-hour JWT.
 */
export class BookingOtaClient {
  constructor(
    private readonly xmlUrl: string,
    private readonly requestTimeoutMs: number,
  ) {}

  async pendingReservations(queue: OtaQueue, jwt: string): Promise<PendingReservations> {
    const response = await this.call(queue, jwt, { method: 'GET' });
    return readPendingReservations(queue, await response.text());
  }

  async acknowledge(queue: OtaQueue, jwt: string, reservationIds: string[], now: Date): Promise<void> {
    const response = await this.call(queue, jwt, {
      method: 'POST',
      headers: { 'content-type': 'text/xml; charset=utf-8' },
      body: acknowledgementMessage(queue, reservationIds, now),
    });
    readAcknowledgementAnswer(queue, await response.text());
  }

  private async call(queue: OtaQueue, jwt: string, init: RequestInit): Promise<Response> {
    const response = await providerFetch(
      PROVIDER,
      `${this.xmlUrl}/${OTA_QUEUES[queue].path}`,
      { ...init, headers: { ...init.headers, authorization: `Bearer ${jwt}`, accept: 'text/xml, application/xml' } },
      this.requestTimeoutMs,
    );
    if (response.ok) return response;
    await response.body?.cancel();
    const message = `${PROVIDER} ${init.method} ${OTA_QUEUES[queue].path} answered ${response.status}`;
    // A refused JWT is renewed by the connection's own refresh schedule; refused credentials surface there as invalid_grant.
    if (response.status === 401 || response.status === 429 || response.status >= 500) throw new ProviderError('transient', message, { status: response.status });
    throw new ProviderError('protocol', message, { status: response.status });
  }
}
