// Opt-in faults of a fake's token endpoint, and the record of every refresh it answered, for the
// chaos scenarios (test/chaos). A fake started without them behaves exactly as before. No provider
// rules here: the fakes decide what a refresh does; this decides whether the caller hears of it.
import type { FastifyReply, FastifyRequest } from 'fastify';

/** How an answer fails to arrive: the connection is cut at once, or nothing comes until the caller gives up. */
export type LostAnswer = 'reset' | 'timeout';

/** One refresh request as the provider saw it. */
export interface RefreshRecord {
  at: number;
  /** The refresh token the caller presented. */
  presented: string;
  /** The provider carried the refresh out (new tokens issued, a rotation done); the caller may still not have heard. */
  succeeded: boolean;
  /** The account or authorization the tokens belong to (undefined when the token was unknown). */
  grant?: string;
  /** A new refresh token replaced the presented one. */
  rotatedTo?: string;
  /** Expiry of the access token issued. */
  accessTokenExpiresAt?: number;
  /** The answer never reached the caller. */
  lost?: LostAnswer;
  /** Failed before any work by the random outage. */
  outage?: 'status' | 'timeout';
}

/** Every access token issued, with its grant: successors and expiries line up per grant. */
export interface IssuedAccessToken {
  grant: string;
  issuedAt: number;
  expiresAt: number;
}

export interface TokenEndpointFaultOptions {
  clock: () => number;
  /** Share (0 to 1) of token requests that fail before any work: they answer 503, or never answer. */
  outageRate?: number;
  /** Of those, the share that never answers (the caller times out); 0.5 unless given. */
  outageTimeoutShare?: number;
  /** Where the outage draws its numbers (a seeded generator keeps a run reproducible). */
  random?: () => number;
}

export class TokenEndpointFaults {
  readonly refreshes: RefreshRecord[] = [];
  readonly issuedAccessTokens: IssuedAccessToken[] = [];
  /** Outage answers given (status) and requests left unanswered (timeout), code exchanges included. */
  readonly outages = { status: 0, timeout: 0 };
  private lostAnswers: { count: number; how: LostAnswer } = { count: 0, how: 'reset' };
  private readonly lostAnswerOfGrant = new Map<string, LostAnswer>();
  private outageRate: number;

  constructor(private readonly options: TokenEndpointFaultOptions) {
    this.outageRate = options.outageRate ?? 0;
  }

  /** The next `count` successful refreshes are carried out, rotation included, but their answer is lost. */
  loseRefreshAnswers(count: number, how: LostAnswer = 'reset'): void {
    if (!Number.isInteger(count) || count < 0) throw new RangeError('loseRefreshAnswers count must be a non-negative integer');
    this.lostAnswers = { count, how };
  }

  /** The next successful refresh of each of these grants is carried out, rotation included, but its answer is lost. */
  loseNextRefreshAnswerOf(grants: Iterable<string>, how: LostAnswer = 'reset'): void {
    for (const grant of grants) this.lostAnswerOfGrant.set(grant, how);
  }

  /** Starts or ends the random outage (0 ends it). */
  setOutageRate(rate: number): void {
    if (!(rate >= 0 && rate <= 1)) throw new RangeError('outage rate must be between 0 and 1');
    this.outageRate = rate;
  }

  /**
   * Before the token endpoint does anything: true when the outage took the request (a 503 was sent,
   * or the request was left unanswered until the caller gave up), so the fake must not answer it.
   */
  async outage(request: FastifyRequest, reply: FastifyReply, statusBody: object, isRefresh: boolean, presented?: string): Promise<boolean> {
    if (this.outageRate === 0) return false;
    const random = this.options.random ?? Math.random;
    if (random() >= this.outageRate) return false;
    const kind = random() < (this.options.outageTimeoutShare ?? 0.5) ? 'timeout' : 'status';
    this.outages[kind] += 1;
    if (isRefresh && presented !== undefined) this.refreshes.push({ at: this.options.clock(), presented, succeeded: false, outage: kind });
    if (kind === 'status') {
      await reply.code(503).header('cache-control', 'no-store').send(statusBody);
      return true;
    }
    await this.neverAnswer(request, reply, 'timeout');
    return true;
  }

  /** After a refresh was decided: records it, and tells the fake whether its answer may be sent. */
  refreshDone(record: Omit<RefreshRecord, 'lost'>): LostAnswer | undefined {
    let lost: LostAnswer | undefined;
    if (record.succeeded && record.grant !== undefined && this.lostAnswerOfGrant.has(record.grant)) {
      lost = this.lostAnswerOfGrant.get(record.grant);
      this.lostAnswerOfGrant.delete(record.grant);
    } else if (record.succeeded && this.lostAnswers.count > 0) {
      this.lostAnswers.count -= 1;
      lost = this.lostAnswers.how;
    }
    this.refreshes.push({ ...record, ...(lost ? { lost } : {}) });
    return lost;
  }

  /**
   * After a token endpoint of the OAuth shape decided its answer (a 200 carries access_token and
   * expires_in, and refresh_token when it issues one): records the access token issued and, for a
   * refresh of `presented`, the refresh; tells the fake whether its answer may be sent. `grantOf`
   * names the grant an access token the fake issued belongs to.
   */
  tokenAnswered(
    at: number,
    answer: { status: number; body: object },
    grantOf: (accessToken: string) => string | undefined,
    presented: string | undefined,
  ): LostAnswer | undefined {
    const issued = answer.status === 200 ? (answer.body as { access_token: string; expires_in: number; refresh_token?: string }) : undefined;
    const grant = issued ? grantOf(issued.access_token) : undefined;
    const accessTokenExpiresAt = issued ? at + issued.expires_in * 1000 : undefined;
    if (grant !== undefined && accessTokenExpiresAt !== undefined) this.accessTokenIssued(grant, accessTokenExpiresAt);
    if (presented === undefined) return undefined;
    return this.refreshDone({
      at,
      presented,
      succeeded: issued !== undefined,
      ...(grant === undefined ? {} : { grant }),
      ...(issued?.refresh_token === undefined ? {} : { rotatedTo: issued.refresh_token }),
      ...(accessTokenExpiresAt === undefined ? {} : { accessTokenExpiresAt }),
    });
  }

  /** Every access token the fake issues (code exchanges and refreshes alike). */
  accessTokenIssued(grant: string, expiresAt: number): void {
    this.issuedAccessTokens.push({ grant, issuedAt: this.options.clock(), expiresAt });
  }

  /** The answer is not sent: the connection is cut now (reset) or once the caller gives up waiting (timeout). */
  async neverAnswer(request: FastifyRequest, reply: FastifyReply, how: LostAnswer): Promise<void> {
    reply.hijack();
    const socket = request.raw.socket;
    if (how === 'timeout' && !socket.destroyed) await new Promise((resolve) => socket.once('close', resolve));
    socket.destroy();
  }
}
