// What the fake Airbnb (fakes/airbnb.ts) knows about its hosts: listings, reservations and webhook
// subscriptions. No HTTP here.

type FakeReservationStatus = 'accepted' | 'altered' | 'cancelled';

export interface FakeListing {
  id: number;
  name: string;
}

export interface FakeReservation {
  confirmation_code: string;
  listing_id: number;
  status: FakeReservationStatus;
  start_date: string;
  end_date: string;
  guest: { first_name: string | null } | null;
  updated_at: string;
}

export interface FakeWebhookSubscription {
  id: number;
  userId: string;
  url: string;
  events: string[];
}

interface StoredReservation {
  userId: string;
  /** Position in the change feed: a cursor names the last position its reader saw. */
  sequence: number;
  reservation: FakeReservation;
}

type ReservationPage =
  | { kind: 'page'; reservations: FakeReservation[]; cursor: string; hasMore: boolean }
  | { kind: 'gone' }
  | { kind: 'invalid' };

export class AirbnbHosts {
  private readonly listings = new Map<string, FakeListing[]>();
  private readonly reservations = new Map<string, StoredReservation>();
  private readonly subscriptions = new Map<number, FakeWebhookSubscription>();
  private nextId = 40_000_000;
  private sequence = 0;
  /** Cursors carry the epoch they were issued in; expiring cursors starts a new one (410 for the old). */
  private cursorEpoch = 1;

  constructor(private readonly clock: () => number) {}

  createHost(listingNames: string[]): { userId: string; listings: FakeListing[] } {
    const userId = String(this.nextId++);
    const listings = listingNames.map((name) => ({ id: this.nextId++, name }));
    this.listings.set(userId, listings);
    return { userId, listings };
  }

  addListing(userId: string, name: string): FakeListing {
    const listing = { id: this.nextId++, name };
    this.hostListings(userId).push(listing);
    return listing;
  }

  hostListings(userId: string): FakeListing[] {
    const listings = this.listings.get(userId);
    if (!listings) throw new Error(`fake Airbnb has no host ${userId}`);
    return listings;
  }

  ownerOfListing(listingId: number): string {
    for (const [userId, listings] of this.listings) if (listings.some((listing) => listing.id === listingId)) return userId;
    throw new Error(`fake Airbnb has no listing ${listingId}`);
  }

  createReservation(input: { listingId: number; startDate: string; endDate: string; guestFirstName?: string }): FakeReservation {
    const code = `HM${(this.nextId++).toString(36).toUpperCase()}`;
    const userId = this.ownerOfListing(input.listingId);
    const reservation: FakeReservation = {
      confirmation_code: code,
      listing_id: input.listingId,
      status: 'accepted',
      start_date: input.startDate,
      end_date: input.endDate,
      guest: { first_name: input.guestFirstName ?? null },
      updated_at: '',
    };
    this.reservations.set(code, { userId, sequence: 0, reservation });
    return this.touch(code);
  }

  alterReservation(code: string, change: { startDate?: string; endDate?: string; guestFirstName?: string }): FakeReservation {
    const { reservation } = this.stored(code);
    reservation.status = 'altered';
    if (change.startDate !== undefined) reservation.start_date = change.startDate;
    if (change.endDate !== undefined) reservation.end_date = change.endDate;
    if (change.guestFirstName !== undefined) reservation.guest = { first_name: change.guestFirstName };
    return this.touch(code);
  }

  cancelReservation(code: string): FakeReservation {
    this.stored(code).reservation.status = 'cancelled';
    return this.touch(code);
  }

  reservation(code: string): FakeReservation {
    return structuredClone(this.stored(code).reservation);
  }

  /** The host's reservations changed after `cursor` (all without one), in the order they changed. */
  reservationsSince(userId: string, cursor: string | undefined, limit: number): ReservationPage {
    let after = 0;
    if (cursor !== undefined) {
      const position = /^(\d+)\.(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
      if (!position) return { kind: 'invalid' };
      if (Number(position[1]) !== this.cursorEpoch) return { kind: 'gone' };
      after = Number(position[2]);
    }
    const changed = [...this.reservations.values()]
      .filter((stored) => stored.userId === userId && stored.sequence > after)
      .sort((a, b) => a.sequence - b.sequence);
    const page = changed.slice(0, limit);
    const last = page.at(-1)?.sequence ?? after;
    return {
      kind: 'page',
      reservations: page.map((stored) => structuredClone(stored.reservation)),
      cursor: Buffer.from(`${this.cursorEpoch}.${last}`).toString('base64url'),
      hasMore: changed.length > page.length,
    };
  }

  /** Every cursor handed out so far answers 410 from now on. */
  expireCursors(): void {
    this.cursorEpoch += 1;
  }

  subscribe(userId: string, url: string, events: string[]): FakeWebhookSubscription {
    const subscription = { id: this.nextId++, userId, url, events: [...events] };
    this.subscriptions.set(subscription.id, subscription);
    return subscription;
  }

  hostSubscriptions(userId: string): FakeWebhookSubscription[] {
    return [...this.subscriptions.values()].filter((subscription) => subscription.userId === userId);
  }

  /** False when the host has no such subscription (Airbnb: 404). */
  unsubscribe(userId: string, id: number): boolean {
    if (this.subscriptions.get(id)?.userId !== userId) return false;
    return this.subscriptions.delete(id);
  }

  liveSubscriptions(): FakeWebhookSubscription[] {
    return [...this.subscriptions.values()].map((subscription) => ({ ...subscription }));
  }

  /** As Airbnb may do to a subscription whose deliveries keep failing. */
  dropSubscriptions(): void {
    this.subscriptions.clear();
  }

  private stored(code: string): StoredReservation {
    const stored = this.reservations.get(code);
    if (!stored) throw new Error(`fake Airbnb has no reservation ${code}`);
    return stored;
  }

  private touch(code: string): FakeReservation {
    const stored = this.stored(code);
    stored.sequence = ++this.sequence;
    stored.reservation.updated_at = new Date(this.clock()).toISOString();
    return structuredClone(stored.reservation);
  }
}
