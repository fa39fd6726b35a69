import type { Client, WorkflowHandle } from '@temporalio/client';
import temporalProto from '@temporalio/proto';
import type pg from 'pg';
import type { FakeGoogleCall } from '../../fakes/google';
import { refreshDueAt } from '../../workflows/connection-tokens';
import type { RefreshPolicy } from '../../workflows/connection-messages';
import { processTreeUsage } from '../processes';
import type { ConnectAttempt } from './connect-driver';

const { EventType } = temporalProto.temporal.api.enums.v1;

export interface Distribution {
  count: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
}

export function distribution(values: number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (share: number) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.ceil(share * sorted.length) - 1)]!);
  return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? null };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The fake Google's record of calls, fetched from its process as it grows. */
export class GoogleCalls {
  readonly calls: FakeGoogleCall[] = [];

  constructor(private readonly statsUrl: string) {}

  async update(): Promise<FakeGoogleCall[]> {
    const response = await fetch(`${this.statsUrl}?from=${this.calls.length}`);
    const { calls } = (await response.json()) as { calls: FakeGoogleCall[] };
    this.calls.push(...calls);
    return this.calls;
  }

  between(from: number, to: number): FakeGoogleCall[] {
    return this.calls.filter((call) => call.at >= from && call.at < to);
  }
}

export interface RefreshTiming {
  refreshes: number;
  /** Seconds after the deadline (negative: ahead of it). The deadline is the planned refresh time without jitter. */
  lateSeconds: Distribution;
  lateCount: number;
  /** Seconds left before the replaced access token expired. */
  slackSeconds: { min: number | null; p50: number | null };
  afterExpiry: number;
  /** Refreshes of a token that had lived less than half its lifetime: a refresh in a loop, or a second one. */
  early: number;
  expiredTokenCalls: number;
  lateValues: number[];
}

/**
 * Each granted refresh against the access token it replaced: its deadline is when the policy plans the
 * refresh without jitter (`refreshDueAt` with jitter 0, from the token's issue time at Google, which
 * is a little before the platform received it, so the deadline is if anything early).
 */
export function refreshTiming(calls: FakeGoogleCall[], policy: RefreshPolicy): RefreshTiming {
  const refreshes = calls.filter((call) => call.endpoint === 'token' && call.grantType === 'refresh_token' && call.status === 200 && call.replaces);
  const withoutJitter = { ...policy, jitterSeconds: 0 };
  const late = refreshes.map((call) => (call.at - refreshDueAt(call.replaces!.expiresAt, call.replaces!.issuedAt, withoutJitter)) / 1000);
  const slack = refreshes.map((call) => (call.replaces!.expiresAt - call.at) / 1000);
  const slackDistribution = distribution(slack);
  return {
    refreshes: refreshes.length,
    lateSeconds: distribution(late),
    lateCount: late.filter((seconds) => seconds > 0).length,
    slackSeconds: { min: slack.length === 0 ? null : slack.reduce((least, seconds) => Math.min(least, seconds)), p50: slackDistribution.p50 },
    afterExpiry: slack.filter((seconds) => seconds < 0).length,
    early: refreshes.filter((call) => call.at - call.replaces!.issuedAt < (call.replaces!.expiresAt - call.replaces!.issuedAt) / 2).length,
    expiredTokenCalls: calls.filter((call) => call.accessTokenExpired === true).length,
    lateValues: late,
  };
}

/**
 * How long a token of this lifetime is kept before its refresh, on average: its life less the planned
 * margin and half the largest jitter (the workflow's jitter is at most a quarter of the margin).
 */
export function meanRefreshIntervalMs(lifetimeSeconds: number, policy: RefreshPolicy): number {
  const marginMs = plannedMarginMs(lifetimeSeconds, policy);
  return lifetimeSeconds * 1000 - marginMs - Math.min(policy.jitterSeconds * 1000, marginMs / 4) / 2;
}

/** The margin the policy keeps, without jitter, for a token of this lifetime (ms). */
export function plannedMarginMs(lifetimeSeconds: number, policy: RefreshPolicy): number {
  const lifetimeMs = lifetimeSeconds * 1000;
  return lifetimeMs - refreshDueAt(lifetimeMs, 0, { ...policy, jitterSeconds: 0 });
}

/** When each connection became active: the IntegrationConnect audit row written with its tokens. */
export async function activationTimes(db: pg.Pool): Promise<Map<string, number>> {
  const { rows } = await db.query<{ connection_id: string; at: Date }>(
    `SELECT connection_id, min(occurred_at) AS at FROM audit_log WHERE action = 'IntegrationConnect' AND outcome = 'success' GROUP BY connection_id`,
  );
  return new Map(rows.map((row) => [row.connection_id, row.at.getTime()]));
}

/** Callback sent to active, in seconds, for the attempts whose connection is active. */
export function connectLatencies(attempts: ConnectAttempt[], activatedAt: Map<string, number>): number[] {
  return attempts.flatMap((attempt) => {
    const at = attempt.connectionId === undefined ? undefined : activatedAt.get(attempt.connectionId);
    return at === undefined ? [] : [(at - attempt.callbackSentAt) / 1000];
  });
}

export async function statusCounts(db: pg.Pool): Promise<Record<string, number>> {
  const { rows } = await db.query<{ status: string; count: string }>('SELECT status::text, count(*) FROM integration_connections GROUP BY status');
  return Object.fromEntries(rows.map((row) => [row.status, Number(row.count)]));
}

/** Waits until no connection is pending (or the time is up); answers the last counts. */
export async function waitUntilSettled(db: pg.Pool, expected: number, timeoutMs: number): Promise<Record<string, number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await statusCounts(db);
    const total = Object.values(counts).reduce((sum, count) => sum + count, 0);
    if ((total >= expected && !counts.pending) || Date.now() > deadline) return counts;
    await sleep(1000);
  }
}

export async function lostConnections(db: pg.Pool): Promise<Array<{ id: string; status: string; lastErrorKind: string | null; lastErrorMessage: string | null }>> {
  const { rows } = await db.query<{ id: string; status: string; last_error_kind: string | null; last_error_message: string | null }>(
    `SELECT id, status::text, last_error_kind, last_error_message FROM integration_connections WHERE status <> 'active' ORDER BY id`,
  );
  return rows.map((row) => ({ id: row.id, status: row.status, lastErrorKind: row.last_error_kind, lastErrorMessage: row.last_error_message }));
}

/** Rows of every table of the schema, per table (those with rows) and in total. */
export async function tableRows(db: pg.Pool): Promise<Record<string, number>> {
  const { rows: tables } = await db.query<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`);
  const counts: Record<string, number> = {};
  for (const { name } of tables) {
    const { rows } = await db.query<{ count: string }>(`SELECT count(*) FROM "${name}"`);
    if (Number(rows[0]!.count) > 0) counts[name] = Number(rows[0]!.count);
  }
  return counts;
}

export interface Recovery {
  /** When no connection was overdue any more; null if that never happened within the time allowed. */
  recoveredAt: number | null;
  backlog: number;
  /** For each connection overdue when the worker was up: ms from then to its first refresh (refreshed ones only). */
  firstRefreshMs: number[];
}

/**
 * After a restart: waits until every active connection whose refresh deadline (without jitter) had
 * passed when the worker was up again has been refreshed, i.e. its access token now expires later
 * than that moment plus the margin. Each of those connections' first `last_refreshed_at` after that
 * moment is noted at the poll that first sees it, before a second refresh could replace it.
 */
export async function waitForRecovery(db: pg.Pool, workerUpAt: number, marginMs: number, timeoutMs: number): Promise<Recovery> {
  const overdueAfter = new Date(workerUpAt + marginMs);
  const { rows: backlog } = await db.query<{ id: string }>(
    `SELECT id FROM integration_connections WHERE status = 'active' AND access_token_expires_at <= $1`,
    [overdueAfter],
  );
  const firstRefreshAt = new Map<string, number>();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows: refreshed } = await db.query<{ id: string; at: Date }>(
      `SELECT id, last_refreshed_at AS at FROM integration_connections WHERE id = ANY($1) AND last_refreshed_at >= $2`,
      [backlog.map((row) => row.id).filter((id) => !firstRefreshAt.has(id)), new Date(workerUpAt)],
    );
    for (const row of refreshed) firstRefreshAt.set(row.id, row.at.getTime());
    const { rows } = await db.query<{ count: string }>(
      `SELECT count(*) FROM integration_connections WHERE status = 'active' AND access_token_expires_at <= $1`,
      [overdueAfter],
    );
    const recoveredAt = Number(rows[0]!.count) === 0 ? Date.now() : Date.now() > deadline ? null : undefined;
    if (recoveredAt !== undefined) {
      return { recoveredAt, backlog: backlog.length, firstRefreshMs: [...firstRefreshAt.values()].map((at) => at - workerUpAt) };
    }
    await sleep(500);
  }
}

export interface Straggler {
  id: string;
  status: string;
  accessTokenExpiresAt: string | null;
  workflowStatus: string;
}

/** Up to `limit` connections still overdue (as in `waitForRecovery`), with their workflow's status. */
export async function stragglers(db: pg.Pool, client: Client, workerUpAt: number, marginMs: number, limit: number): Promise<Straggler[]> {
  const { rows } = await db.query<{ id: string; status: string; workflow_id: string; expires_at: Date | null }>(
    `SELECT id, status::text, workflow_id, access_token_expires_at AS expires_at FROM integration_connections
      WHERE status = 'active' AND access_token_expires_at <= $1 ORDER BY access_token_expires_at LIMIT $2`,
    [new Date(workerUpAt + marginMs), limit],
  );
  return Promise.all(rows.map(async (row) => ({
    id: row.id,
    status: row.status,
    accessTokenExpiresAt: row.expires_at?.toISOString() ?? null,
    workflowStatus: await client.workflow.getHandle(row.workflow_id).describe().then((description) => description.status.name, (error: unknown) => `describe failed: ${String(error)}`),
  })));
}

type Summary = { mean: number | null; max: number | null };

export interface HistoryCost {
  connections: number;
  /** Runs read, following each workflow's continue-as-new chain back to the run open at the window's start. */
  runs: number;
  /** Complete cycles within one run. */
  cycles: number;
  /** Per refresh cycle within a run (from one cycle's first refreshConnectionTokens to the next's). */
  eventsPerCycle: Summary;
  refreshActivitiesPerCycle: Summary;
  searchAttributeUpsertsPerCycle: Summary;
  memoUpdatesPerCycle: Summary;
  /** Over the window, across runs: every event in it (continue-as-new and the new runs' first events too) / cycles begun in it. */
  amortised: { events: number; cycles: number; eventsPerCycle: number | null };
}

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];

const eventMs = (event: HistoryEvent) => Number(event.eventTime?.seconds?.toString() ?? 0) * 1000 + Math.floor((event.eventTime?.nanos ?? 0) / 1e6);

const isRefreshScheduled = (event: HistoryEvent) =>
  event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED && event.activityTaskScheduledEventAttributes?.activityType?.name === 'refreshConnectionTokens';

/** A workflow's runs, oldest first, back to the first one that started at or before `from` (or the first run). */
async function runsSince(client: Client, workflowId: string, from: number): Promise<HistoryEvent[][]> {
  const runs: HistoryEvent[][] = [];
  let runId: string | undefined;
  for (;;) {
    const events = (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
    runs.unshift(events);
    const started = events[0];
    runId = started?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? undefined;
    if (!started || eventMs(started) <= from || !runId) return runs;
  }
}

/**
 * Temporal's cost of a refresh cycle, from the histories of a sample of connections. Activities of
 * one cycle are scheduled close together (a second try within seconds); a gap of more than half a
 * token lifetime starts the next cycle. A cycle's second try may fall in the next run: cycles are told
 * apart across the whole chain, but measured one by one only when they begin and end in one run.
 */
export async function historyCost(client: Client, workflowIds: string[], lifetimeSeconds: number, window: { from: number; to: number }): Promise<HistoryCost> {
  const cycles: Array<{ events: number; refreshes: number; upserts: number; memos: number }> = [];
  const inWindow = (at: number) => at >= window.from && at < window.to;
  let runCount = 0;
  let windowEvents = 0;
  let windowCycles = 0;
  for (const workflowId of workflowIds) {
    const runs = await runsSince(client, workflowId, window.from);
    runCount += runs.length;
    let lastScheduledAt = -Infinity;
    for (const events of runs) {
      windowEvents += events.filter((event) => inWindow(eventMs(event))).length;
      const starts: number[] = [];
      const refreshesAt: number[] = [];
      events.forEach((event, index) => {
        if (!isRefreshScheduled(event)) return;
        const at = eventMs(event);
        if (at - lastScheduledAt > (lifetimeSeconds * 1000) / 2) {
          starts.push(index);
          if (inWindow(at)) windowCycles++;
        }
        refreshesAt.push(index);
        lastScheduledAt = at;
      });
      for (let i = 0; i + 1 < starts.length; i++) {
        const [from, to] = [starts[i]!, starts[i + 1]!];
        const slice = events.slice(from, to);
        cycles.push({
          events: to - from,
          refreshes: refreshesAt.filter((index) => index >= from && index < to).length,
          upserts: slice.filter((event) => event.eventType === EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES).length,
          memos: slice.filter((event) => event.eventType === EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED).length,
        });
      }
    }
  }
  const summary = (values: number[]): Summary => ({ mean: values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length, max: values.length === 0 ? null : Math.max(...values) });
  return {
    connections: workflowIds.length,
    runs: runCount,
    cycles: cycles.length,
    eventsPerCycle: summary(cycles.map((cycle) => cycle.events)),
    refreshActivitiesPerCycle: summary(cycles.map((cycle) => cycle.refreshes)),
    searchAttributeUpsertsPerCycle: summary(cycles.map((cycle) => cycle.upserts)),
    memoUpdatesPerCycle: summary(cycles.map((cycle) => cycle.memos)),
    amortised: { events: windowEvents, cycles: windowCycles, eventsPerCycle: windowCycles === 0 ? null : windowEvents / windowCycles },
  };
}

/** Samples the RSS of a process tree (the worker's, which changes at a restart) every few seconds. */
export class RssSampler {
  readonly samples: Array<{ at: number; bytes: number }> = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly pid: () => number | undefined, private readonly intervalMs = 2000) {}

  start(): void {
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
  }

  async sample(): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) return;
    this.samples.push({ at: Date.now(), bytes: (await processTreeUsage(pid)).rssBytes });
  }

  stop(): void {
    clearInterval(this.timer);
  }

  get peakBytes(): number {
    return this.samples.reduce((peak, sample) => Math.max(peak, sample.bytes), 0);
  }

  get lastBytes(): number {
    return this.samples.at(-1)?.bytes ?? 0;
  }
}
