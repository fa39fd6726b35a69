import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { WorkflowHandle } from '@temporalio/client';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { ssoSessionWorkflowStart } from '../../api/reality/sso-session-workflow';
import { LOGOUT_TOKEN_JWT_TYPE } from '../../platform/sso/logout-tokens';
import type { SigningKeys } from '../../platform/oauth-server/signing-keys';
import { randomToken, hashBearerValue } from '../../platform/secrets';
import type { ssoSessionWorkflow } from '../../workflows/sso-session';
import { pmSessionEndedSignal, portalSessionEndedSignal, ssoSessionStatusQuery, type SsoSessionState } from '../../workflows/sso-session-messages';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { eventually } from './eventually';
import { startTestPlatform, type TestPlatform } from './platform';
import { freePort } from './ports';
import type { SimulatedClock } from './temporal';

/**
 * SSO pairs as the SSO session workflow's tests need them: a PM user with a PM session and a portal
 * account with a portal session that came from it (rows inserted as the api-server and the
 * reality-server would have written them), and stand-ins for the two back-channel logout receivers
 * whose answers a test scripts.
 */

const MINUTE = 60_000;

export const SSO_IDLE_SECONDS = 1800;
export const SSO_BACKCHANNEL_DEADLINE_SECONDS = 600;
export const SSO_LOGOUT_TOKEN_SECONDS = 120;

export interface SsoSessionTestPlatform {
  platform: TestPlatform;
  /** Stands in for the reality-server's `POST /sso/backchannel-logout` (REALITY_PUBLIC_URL points at it). */
  portal: LogoutReceiver;
  /** Stands in for the api-server's `POST /oauth/backchannel-logout` (OAUTH_ISSUER points at it). */
  apiServer: LogoutReceiver;
  close(): Promise<void>;
}

/**
 * The platform (worker, Postgres, api-server) on the time-skipping server with `clock` as the
 * activities' clock, and two scripted back-channel logout receivers as the two servers' endpoints.
 */
export async function startSsoSessionTestPlatform(temporal: TestWorkflowEnvironment, clock: SimulatedClock): Promise<SsoSessionTestPlatform> {
  // The receivers' URLs configure the platform; their checks need its keys, asked for per delivery.
  const holder: { platform?: TestPlatform } = {};
  const started = () => holder.platform!;
  const now = () => temporal.currentTimeMs();
  const portal = await LogoutReceiver.start({
    keys: () => started().sso.authorizationServerKeys,
    issuer: () => started().config.authorizationServer.issuer,
    audience: () => started().config.sso.portal.clientId,
    now,
  });
  const apiServer = await LogoutReceiver.start({
    keys: () => started().sso.realityServerKeys,
    issuer: () => started().config.sso.portal.publicUrl,
    audience: () => started().config.authorizationServer.issuer,
    now,
  });
  const platform = await startTestPlatform({
    temporal,
    clock: clock.activityClock,
    activityInterceptors: [clockAtAttemptStart(clock)],
    environment: {
      OAUTH_ISSUER: apiServer.url,
      REALITY_PUBLIC_URL: portal.url,
      SESSION_IDLE_SECONDS: String(SSO_IDLE_SECONDS),
      SSO_BACKCHANNEL_LOGOUT_DEADLINE_SECONDS: String(SSO_BACKCHANNEL_DEADLINE_SECONDS),
      SSO_LOGOUT_TOKEN_TTL_SECONDS: String(SSO_LOGOUT_TOKEN_SECONDS),
    },
  });
  holder.platform = platform;
  return {
    platform,
    portal,
    apiServer,
    async close() {
      await platform.close();
      await portal.close();
      await apiServer.close();
    },
  };
}

/**
 * The activities' clock reads the server's time as each attempt begins (the server holds time still
 * while it runs). The time-skipping server stamps a retry as scheduled when the previous attempt
 * failed, before the backoff: without this, a retry after a pause longer than the logout tokens'
 * lifetime would sign a token that has expired before it is sent, which a receiver refuses (400).
 */
function clockAtAttemptStart(clock: SimulatedClock): ActivityInterceptorsFactory {
  return () => ({
    inbound: {
      async execute(input, next) {
        await clock.catchUp();
        return next(input);
      },
    },
  });
}

/** What the real receivers do before their 200: end the sessions of the pair the token names. */
export function receiversEndSessions({ platform, portal, apiServer }: SsoSessionTestPlatform, pair: SsoPair): void {
  portal.onAccepted(pair, async () => {
    await platform.db.query(sql.unsafe`UPDATE portal_sessions SET ended_at = now(), ended_reason = 'pm_logout' WHERE id = ${pair.portalSessionId} AND ended_at IS NULL`);
  });
  apiServer.onAccepted(pair, async () => {
    await platform.db.query(sql.unsafe`UPDATE user_sessions SET revoked_at = now(), ended_reason = 'portal_logout' WHERE id = ${pair.pmSessionId} AND revoked_at IS NULL`);
  });
}

/** The PM app's logout: the api-server revokes the session, then signals the workflow (api/sso-session-signals.ts). */
export async function pmLogout(platform: TestPlatform, pair: SsoPair, handle: SsoSessionHandle): Promise<void> {
  await platform.db.query(sql.unsafe`UPDATE user_sessions SET revoked_at = now(), ended_reason = 'logout' WHERE id = ${pair.pmSessionId}`);
  await handle.signal(pmSessionEndedSignal, { reason: 'logout' });
}

/** The portal's sign-out: the reality-server ends its session, then signals the workflow. */
export async function portalLogout(platform: TestPlatform, pair: SsoPair, handle: SsoSessionHandle): Promise<void> {
  await platform.db.query(sql.unsafe`UPDATE portal_sessions SET ended_at = now(), ended_reason = 'logout' WHERE id = ${pair.portalSessionId}`);
  await handle.signal(portalSessionEndedSignal, { reason: 'logout' });
}

export interface SsoPair {
  pmUserId: string;
  pmSessionId: string;
  portalUserId: string;
  portalSessionId: string;
  /** Session tokens of both sessions (only their hashes are stored): no history may hold them. */
  secrets: string[];
}

export interface SsoPairOptions {
  /** The time the sessions were made and last used (the simulated clock's now). */
  now: number;
  pmRoles?: string[];
  /** The roles_version the portal session applied (the user's own by default). */
  appliedRolesVersion?: number;
  /** Absolute lifetime of the portal session from `now` (12 h by default). */
  portalSessionMs?: number;
  /** Absolute lifetime of the PM session from `now` (12 h by default). */
  pmSessionMs?: number;
}

export async function insertSsoPair(db: CommonQueryMethods, options: SsoPairOptions): Promise<SsoPair> {
  const at = (ms: number) => sql.timestamp(new Date(options.now + ms));
  const email = `sso-${randomUUID()}@example.com`;
  const pmUserId = await db.oneFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO users (email, display_name, password_hash, roles, roles_version, created_at)
    VALUES (${email}, 'SSO user', 'not-a-password-hash', ${sql.array(options.pmRoles ?? ['viewer'], 'text')}, 1, ${at(0)})
    RETURNING id`);
  const pmToken = randomToken();
  const pmSessionId = await db.oneFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO user_sessions (user_id, token_hash, created_at, last_seen_at, expires_at)
    VALUES (${pmUserId}, ${hashBearerValue(pmToken)}, ${at(0)}, ${at(0)}, ${at(options.pmSessionMs ?? 12 * 60 * MINUTE)})
    RETURNING id`);
  const portalUserId = await db.oneFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO portal_users (pm_user_id, email, display_name, roles) VALUES (${pmUserId}, ${email}, 'SSO user', '{listing_viewer}')
    RETURNING id`);
  const portalToken = randomToken();
  const portalSessionId = await db.oneFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO portal_sessions (portal_user_id, token_hash, pm_session_id, roles_version, method, created_at, last_seen_at, expires_at)
    VALUES (${portalUserId}, ${hashBearerValue(portalToken)}, ${pmSessionId}, ${options.appliedRolesVersion ?? 1}, 'sso_token',
            ${at(0)}, ${at(0)}, ${at(options.portalSessionMs ?? 12 * 60 * MINUTE)})
    RETURNING id`);
  return { pmUserId, pmSessionId, portalUserId, portalSessionId, secrets: [pmToken, portalToken] };
}

export type SsoSessionHandle = WorkflowHandle<typeof ssoSessionWorkflow>;

/** Starts the pair's workflow as the reality-server does (api/reality/sso-session-workflow.ts), with the sessions' earlier expiry. */
export async function startSsoSessionWorkflow(platform: TestPlatform, pair: SsoPair): Promise<SsoSessionHandle> {
  const expiresAt = await platform.db.oneFirst(sql.type(z.object({ expiresAt: z.number() }))`
    SELECT LEAST(ps.expires_at, us.expires_at) AS "expiresAt" FROM portal_sessions ps JOIN user_sessions us ON us.id = ps.pm_session_id WHERE ps.id = ${pair.portalSessionId}`);
  const start = ssoSessionWorkflowStart(platform.config, { id: pair.portalSessionId, pmSessionId: pair.pmSessionId, pmUserId: pair.pmUserId, expiresAt: new Date(expiresAt) });
  return platform.client.workflow.start<typeof ssoSessionWorkflow>('ssoSessionWorkflow', start);
}

/** A new pair (used now, by the simulated clock) and its running workflow, once it has read the pair. */
export async function startSsoPair(platform: TestPlatform, clock: SimulatedClock, options: Partial<SsoPairOptions> = {}) {
  await clock.catchUp();
  const startedAt = clock.now();
  const pair = await insertSsoPair(platform.db, { now: startedAt, ...options });
  const handle = await startSsoSessionWorkflow(platform, pair);
  await waitForSsoSessionState(handle, (state) => state.nextCheckAt !== undefined, 'the first check');
  return { pair, handle, startedAt };
}

/** Polls the status query (real time) until `predicate` holds. */
export function waitForSsoSessionState(handle: SsoSessionHandle, predicate: (state: SsoSessionState) => boolean, what = 'SSO session state'): Promise<SsoSessionState> {
  return eventually(async () => {
    const state = await handle.query(ssoSessionStatusQuery);
    return predicate(state) ? state : undefined;
  }, 30_000, what);
}

const sessionEnd = z.object({ endedAt: z.number().nullable(), reason: z.string().nullable(), lastSeenAt: z.number() });
export type SessionEnd = z.infer<typeof sessionEnd>;

export function readPortalSession(db: CommonQueryMethods, pair: SsoPair): Promise<SessionEnd> {
  return db.one(sql.type(sessionEnd)`
    SELECT ended_at AS "endedAt", ended_reason AS reason, last_seen_at AS "lastSeenAt" FROM portal_sessions WHERE id = ${pair.portalSessionId}`);
}

export function readPmSession(db: CommonQueryMethods, pair: SsoPair): Promise<SessionEnd> {
  return db.one(sql.type(sessionEnd)`
    SELECT revoked_at AS "endedAt", ended_reason AS reason, last_seen_at AS "lastSeenAt" FROM user_sessions WHERE id = ${pair.pmSessionId}`);
}

/** What a request of either app does to its session: marks it used at `at`. */
export async function useSessions(db: CommonQueryMethods, pair: SsoPair, at: number, which: Array<'portal' | 'pm'> = ['portal', 'pm']): Promise<void> {
  if (which.includes('portal')) await db.query(sql.unsafe`UPDATE portal_sessions SET last_seen_at = ${sql.timestamp(new Date(at))} WHERE id = ${pair.portalSessionId}`);
  if (which.includes('pm')) await db.query(sql.unsafe`UPDATE user_sessions SET last_seen_at = ${sql.timestamp(new Date(at))} WHERE id = ${pair.pmSessionId}`);
}

/** The SSO session workflow's SsoLogout rows of the pair (the receivers write their own, without the workflow's id). */
export function workflowLogoutAudits(db: CommonQueryMethods, pair: SsoPair) {
  return db.any(sql.type(z.object({ outcome: z.string(), actorType: z.string(), details: z.record(z.unknown()) }))`
    SELECT outcome, actor_type AS "actorType", details FROM audit_log
    WHERE action = 'SsoLogout' AND user_id = ${pair.pmUserId} AND details->>'workflowId' IS NOT NULL ORDER BY id`);
}

export interface ReceivedLogoutToken {
  path: string;
  /** The token itself, so a test can check that no history holds it. */
  token: string;
  /** The PM session the token names (its `sid`, read whether or not the token verified). */
  sid: string | undefined;
  contentType: string | undefined;
  /** The token's verified claims and protected header (null when it did not verify). */
  claims: JWTPayload | null;
  typ: string | undefined;
  verificationError?: string;
  /** What the receiver answered. */
  status: number;
  /** The (simulated) time of the delivery. */
  receivedAt: number;
}

export interface LogoutReceiverOptions {
  /** Whose keys sign the tokens it receives, and the `iss` and `aud` it expects (asked per delivery: the platform starts after its receivers). */
  keys: () => SigningKeys;
  issuer: () => string;
  audience: () => string;
  /** The time of a delivery: the Temporal server's now (time stands still while an activity runs). */
  now: () => Promise<number>;
}

type AcceptedHook = (claims: JWTPayload) => Promise<void>;

/**
 * A back-channel logout receiver on 127.0.0.1 that answers as scripted, then 200 to a token that
 * verifies and 400 to any other, as a real receiver would. Before a 200 it does what a real receiver
 * does (the pair's `onAccepted`, e.g. end the session in the database). Every token is verified with
 * jose against the signer's keys.
 *
 * One receiver serves every case of a file, so a case scripts and reads the deliveries of its own pair
 * (the token's `sid`, the PM session): a delivery of another case's workflow (a retry, a request
 * answered late, a case that ran past its time) neither takes its answers nor shows among its
 * deliveries. `answers` and `received` (every delivery) serve a driver that runs one pair at a time.
 */
export class LogoutReceiver {
  /** Every delivery, in the order they were answered. */
  readonly received: ReceivedLogoutToken[] = [];
  /** Answers to deliveries of a pair that has no script of its own, one per delivery. */
  answers: number[] = [];
  private readonly scripts = new Map<string, number[]>();
  private readonly acceptedHooks = new Map<string, AcceptedHook>();

  private readonly server = createServer((request, response) => {
    void this.handle(request).then(
      (status) => {
        response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        response.end(status === 200 ? '{}' : JSON.stringify({ error: status === 400 ? 'invalid_request' : 'temporarily_unavailable' }));
      },
      (error: unknown) => {
        response.writeHead(500);
        response.end(String(error));
      },
    );
  });

  private constructor(
    readonly url: string,
    private readonly options: LogoutReceiverOptions,
  ) {}

  static async start(options: LogoutReceiverOptions): Promise<LogoutReceiver> {
    const port = await freePort();
    const receiver = new LogoutReceiver(`http://127.0.0.1:${port}`, options);
    await new Promise<void>((resolve) => receiver.server.listen(port, '127.0.0.1', resolve));
    return receiver;
  }

  /** Scripts the answers to the pair's next deliveries, one per delivery in the order they arrive. */
  answer(pair: SsoPair, statuses: number[]): void {
    this.scripts.set(pair.pmSessionId, [...statuses]);
  }

  /** What to do before answering 200 to a token of the pair. */
  onAccepted(pair: SsoPair, hook: AcceptedHook): void {
    this.acceptedHooks.set(pair.pmSessionId, hook);
  }

  /** The pair's deliveries, in the order they were answered. */
  receivedFor(pair: SsoPair): ReceivedLogoutToken[] {
    return this.received.filter((delivery) => delivery.sid === pair.pmSessionId);
  }

  /** The pair's deliveries that were answered 200. */
  deliveredFor(pair: SsoPair): ReceivedLogoutToken[] {
    return this.receivedFor(pair).filter((delivery) => delivery.status === 200);
  }

  /** Forgets every delivery, script and hook. */
  reset(): void {
    this.received.length = 0;
    this.answers = [];
    this.scripts.clear();
    this.acceptedHooks.clear();
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(request: IncomingMessage): Promise<number> {
    const { options } = this;
    // The time is asked as the delivery arrives: a request answered late still has its own time.
    const [body, receivedAt] = await Promise.all([readBody(request), options.now()]);
    const token = new URLSearchParams(body).get('logout_token') ?? '';
    const sid = sidOf(token);
    // Taken before the token's check, which waits on the database: a script's answers go out in the order the deliveries come in.
    const script = (sid !== undefined ? this.scripts.get(sid) : undefined) ?? this.answers;
    const scripted = script.shift();
    const entry: ReceivedLogoutToken = { path: request.url ?? '', token, sid, contentType: request.headers['content-type'], claims: null, typ: undefined, status: 0, receivedAt };
    try {
      entry.typ = decodeProtectedHeader(token).typ;
      const { payload } = await jwtVerify(token, createLocalJWKSet(await options.keys().publicKeySet()), {
        issuer: options.issuer(),
        audience: options.audience(),
        typ: LOGOUT_TOKEN_JWT_TYPE,
        algorithms: ['RS256'],
        currentDate: new Date(entry.receivedAt),
      });
      entry.claims = payload;
    } catch (error) {
      entry.verificationError = error instanceof Error ? error.message : String(error);
    }
    entry.status = scripted ?? (entry.claims ? 200 : 400);
    if (entry.status === 200 && entry.claims && sid !== undefined) await this.acceptedHooks.get(sid)?.(entry.claims);
    this.received.push(entry);
    return entry.status;
  }
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The `sid` claim of a token, unverified: which pair a delivery belongs to, even when it does not verify. */
function sidOf(token: string): string | undefined {
  try {
    const { sid } = decodeJwt(token);
    return typeof sid === 'string' ? sid : undefined;
  } catch {
    return undefined;
  }
}
