// Google Calendar push channels in the fake Google (fakes/google.ts): events.watch and channels.stop, a
// registry of channels that expire by the fake's clock, and notifications POSTed to a channel's address
// with the headers Google sends (the `sync` message first, then `exists`).
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { googleApiError, type FakeCalendarApi } from './google-calendar-api';
import { assertLoopback } from './loopback';

export interface FakeChannel {
  id: string;
  resourceId: string;
  resourceUri: string;
  address: string;
  token: string | undefined;
  account: string;
  createdAt: number;
  expiration: number;
  stoppedAt: number | undefined;
}

export interface PushDelivery {
  channelId: string;
  state: 'sync' | 'exists';
  messageNumber: number;
  status: number;
}

interface WatchBody {
  id?: unknown;
  type?: unknown;
  address?: unknown;
  token?: unknown;
  params?: { ttl?: unknown };
}

const DEFAULT_TTL_SECONDS = 604800;
const CHANNEL_ID = /^[A-Za-z0-9\-_+/=]{1,64}$/;

export class FakePushChannels {
  private readonly registry = new Map<string, FakeChannel & { sent: Array<'sync' | 'exists'> }>();
  private readonly resourceIds = new Map<string, string>();

  constructor(
    private readonly calendarApi: FakeCalendarApi,
    private readonly clock: () => number,
    private readonly baseUrl: () => string,
  ) {}

  register(app: FastifyInstance): void {
    app.post<{ Params: { calendarId: string }; Body: WatchBody | undefined }>('/calendar/v3/calendars/:calendarId/events/watch', async (request, reply) => {
      const caller = await this.calendarApi.authenticate('eventsWatch', request, reply);
      if (caller === undefined) return reply;
      const fail = (status: number, reason: string, message: string) => {
        caller.call.status = status;
        return reply.code(status).send(googleApiError(status, reason, message));
      };
      const body = request.body ?? {};
      if (request.params.calendarId !== 'primary') return fail(404, 'notFound', 'Not Found');
      if (typeof body.id !== 'string' || !CHANNEL_ID.test(body.id)) return fail(400, 'invalid', 'Invalid channel id.');
      if (this.registry.has(body.id)) return fail(400, 'channelIdNotUnique', `Channel id ${body.id} not unique`);
      if (body.type !== 'web_hook') return fail(400, 'pushNotSupportedForRequestedResource', 'Unsupported channel type.');
      if (typeof body.address !== 'string' || !/^https?:\/\//.test(body.address)) return fail(400, 'invalid', 'Invalid channel address.');
      const ttlSeconds = body.params?.ttl === undefined ? DEFAULT_TTL_SECONDS : Number(body.params.ttl);
      if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) return fail(400, 'invalid', 'Invalid ttl.');
      const channel = {
        id: body.id,
        resourceId: this.resourceIdOf(caller.account),
        resourceUri: `${this.baseUrl()}/calendar/v3/calendars/primary/events?alt=json`,
        address: body.address,
        token: typeof body.token === 'string' ? body.token : undefined,
        account: caller.account,
        createdAt: this.clock(),
        expiration: this.clock() + ttlSeconds * 1000,
        stoppedAt: undefined,
        sent: [],
      };
      this.registry.set(channel.id, channel);
      if (this.calendarApi.takeLostWatchAnswer()) {
        caller.call.answerLost = true;
        reply.hijack();
        reply.raw.destroy();
        return reply;
      }
      const { id, resourceId, resourceUri, token, expiration } = channel;
      return { kind: 'api#channel', id, resourceId, resourceUri, ...(token === undefined ? {} : { token }), expiration: String(expiration) };
    });

    app.post<{ Body: { id?: unknown; resourceId?: unknown } | undefined }>('/calendar/v3/channels/stop', async (request, reply) => {
      const caller = await this.calendarApi.authenticate('channelsStop', request, reply);
      if (caller === undefined) return reply;
      const channel = typeof request.body?.id === 'string' ? this.registry.get(request.body.id) : undefined;
      if (!channel || channel.resourceId !== request.body?.resourceId || channel.account !== caller.account || !this.isLive(channel)) {
        caller.call.status = 404;
        return reply.code(404).send(googleApiError(404, 'notFound', `Channel '${String(request.body?.id)}' not found for project '000000000000'`));
      }
      channel.stoppedAt = this.clock();
      caller.call.status = 204;
      return reply.code(204).send();
    });
  }

  /** Every channel ever opened, stopped and expired ones included. */
  channels(): FakeChannel[] {
    return [...this.registry.values()].map(({ sent: _sent, ...channel }) => channel);
  }

  liveChannels(): FakeChannel[] {
    return this.channels().filter((channel) => this.isLive(channel));
  }

  channelTokens(): string[] {
    return this.channels().flatMap((channel) => (channel.token === undefined ? [] : [channel.token]));
  }

  /** Google dropped the channel early (the "expired subscription" failure). */
  expireChannel(channelId: string): void {
    this.liveChannel(channelId).expiration = this.clock();
  }

  /**
   * Tells the receiver that the calendar changed, through one live channel or all of them: a channel's
   * first message is `sync`, as with Google, so its first call sends `sync` and then `exists`.
   */
  async notify(channelId?: string): Promise<PushDelivery[]> {
    const channels = channelId === undefined ? [...this.registry.values()].filter((channel) => this.isLive(channel)) : [this.liveChannel(channelId)];
    const deliveries: PushDelivery[] = [];
    for (const channel of channels) {
      if (channel.sent.length === 0) deliveries.push(await this.send(channel, 'sync'));
      deliveries.push(await this.send(channel, 'exists'));
    }
    return deliveries;
  }

  /** Sends an earlier message again, unchanged, as Google does when it did not see our answer. */
  redeliver(channelId: string, messageNumber: number): Promise<PushDelivery> {
    const channel = this.liveChannel(channelId);
    const state = channel.sent[messageNumber - 1];
    if (state === undefined) throw new Error(`channel ${channelId} sent no message ${messageNumber}`);
    return this.post(channel, state, messageNumber);
  }

  private async send(channel: FakeChannel & { sent: Array<'sync' | 'exists'> }, state: 'sync' | 'exists'): Promise<PushDelivery> {
    channel.sent.push(state);
    return this.post(channel, state, channel.sent.length);
  }

  private async post(channel: FakeChannel, state: 'sync' | 'exists', messageNumber: number): Promise<PushDelivery> {
    assertLoopback(channel.address);
    const response = await fetch(channel.address, {
      method: 'POST',
      headers: {
        'x-goog-channel-id': channel.id,
        ...(channel.token === undefined ? {} : { 'x-goog-channel-token': channel.token }),
        'x-goog-channel-expiration': new Date(channel.expiration).toUTCString(),
        'x-goog-resource-id': channel.resourceId,
        'x-goog-resource-uri': channel.resourceUri,
        'x-goog-resource-state': state,
        'x-goog-message-number': String(messageNumber),
      },
    });
    await response.arrayBuffer();
    return { channelId: channel.id, state, messageNumber, status: response.status };
  }

  private isLive(channel: FakeChannel): boolean {
    return channel.stoppedAt === undefined && channel.expiration > this.clock();
  }

  private liveChannel(channelId: string): FakeChannel & { sent: Array<'sync' | 'exists'> } {
    const channel = this.registry.get(channelId);
    if (!channel || !this.isLive(channel)) throw new Error(`channel ${channelId} is not live`);
    return channel;
  }

  /** Google names the watched collection with one id, the same for every channel on it. */
  private resourceIdOf(account: string): string {
    let resourceId = this.resourceIds.get(account);
    if (resourceId === undefined) this.resourceIds.set(account, (resourceId = randomBytes(20).toString('base64url')));
    return resourceId;
  }
}
