import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import { listConnections, type ConnectionFilters, type ConnectionRow } from '../../db/queries/connections';
import { connectionStatus } from '../../db/queries/connections';
import { ConfigError } from '../../platform/config';
import { PROVIDER_IDS } from '../../platform/providers/provider';
import { CONNECTION_STATUS, LAST_ERROR_KIND, NEXT_REFRESH_AT, PROVIDER, USER_ID } from '../../workflows/search-attributes';
import { oneOf, stringOption, uuidArgument, type AdminCommand } from './command';
import type { AdminContext } from './context';
import { formatTable, printJson, timeCell } from './table';

const CONNECTION_WORKFLOW_TYPE = 'connectionWorkflow';

/** A connection workflow as Temporal's visibility store describes it (search attributes and memo). */
export interface WorkflowView {
  workflowId: string;
  runId: string;
  /** RUNNING, COMPLETED, FAILED, TERMINATED, … */
  execution: string;
  connectionStatus: string | null;
  nextRefreshAt: string | null;
  lastErrorKind: string | null;
  memo: Record<string, unknown> | null;
}

export interface ConnectionListingRow {
  connectionId: string;
  /** Null only for a workflow whose connection row is missing. */
  provider: string | null;
  userId: string | null;
  status: string | null;
  workflowId: string;
  accessTokenExpiresAt: string | null;
  lastRefreshedAt: string | null;
  lastError: { kind: string; message: string; at: string | null } | null;
  workflow: WorkflowView | null;
  /** Which stores answered for this connection. */
  sources: Array<'postgres' | 'temporal-visibility'>;
}

type VisibilityAnswer = { answered: true; namespace: string; query: string; workflows: number } | { answered: false; query: string; error: string };

/** The visibility query an operator could type in Temporal Web for the same filters. */
export function visibilityQuery(filters: ConnectionFilters): string {
  const clauses = [
    `WorkflowType = "${CONNECTION_WORKFLOW_TYPE}"`,
    // A run that continued as new is never a connection's current state.
    'ExecutionStatus != "ContinuedAsNew"',
    ...(filters.provider ? [`${PROVIDER.name} = "${filters.provider}"`] : []),
    ...(filters.userId ? [`${USER_ID.name} = "${filters.userId}"`] : []),
    ...(filters.status ? [`${CONNECTION_STATUS.name} = "${filters.status}"`] : []),
  ];
  return clauses.join(' AND ');
}

function workflowView(execution: WorkflowExecutionInfo): WorkflowView {
  const attributes = execution.typedSearchAttributes;
  return {
    workflowId: execution.workflowId,
    runId: execution.runId,
    execution: execution.status.name,
    connectionStatus: attributes.get(CONNECTION_STATUS) ?? null,
    nextRefreshAt: attributes.get(NEXT_REFRESH_AT)?.toISOString() ?? null,
    lastErrorKind: attributes.get(LAST_ERROR_KIND) ?? null,
    memo: execution.memo ?? null,
  };
}

/** By connection id; when a workflow id has several runs, the running one, else the newest. */
async function readWorkflowViews(client: Client, query: string): Promise<Map<string, WorkflowView>> {
  const newest = new Map<string, WorkflowExecutionInfo>();
  for await (const execution of client.workflow.list({ query })) {
    const connectionId = execution.workflowId.split(':').at(-1)!;
    const known = newest.get(connectionId);
    const better = !known || (known.status.name !== 'RUNNING' && (execution.status.name === 'RUNNING' || execution.startTime > known.startTime));
    if (better) newest.set(connectionId, execution);
  }
  return new Map([...newest].map(([connectionId, execution]) => [connectionId, workflowView(execution)]));
}

function fromDatabase(row: ConnectionRow, workflow: WorkflowView | undefined): ConnectionListingRow {
  const iso = (epochMs: number | null) => (epochMs === null ? null : new Date(epochMs).toISOString());
  return {
    connectionId: row.id,
    provider: row.provider,
    userId: row.userId,
    status: row.status,
    workflowId: row.workflowId,
    accessTokenExpiresAt: iso(row.accessTokenExpiresAt),
    lastRefreshedAt: iso(row.lastRefreshedAt),
    lastError: row.lastErrorKind ? { kind: row.lastErrorKind, message: row.lastErrorMessage ?? '', at: iso(row.lastErrorAt) } : null,
    workflow: workflow ?? null,
    sources: workflow ? ['postgres', 'temporal-visibility'] : ['postgres'],
  };
}

function withoutRow(connectionId: string, workflow: WorkflowView): ConnectionListingRow {
  const memo = workflow.memo ?? {};
  return {
    connectionId,
    provider: typeof memo.provider === 'string' ? memo.provider : null,
    userId: typeof memo.userId === 'string' ? memo.userId : null,
    status: null,
    workflowId: workflow.workflowId,
    accessTokenExpiresAt: null,
    lastRefreshedAt: null,
    lastError: null,
    workflow,
    sources: ['temporal-visibility'],
  };
}

/**
 * The database says what exists and what failed; the workflows' search attributes say what each
 * owner is doing and when it refreshes next. Without an answer from visibility, the rows still come
 * from the database, and the listing says so.
 */
export async function listConnectionsWithWorkflows(context: AdminContext, filters: ConnectionFilters) {
  const query = visibilityQuery(filters);
  let views = new Map<string, WorkflowView>();
  let visibility: VisibilityAnswer;
  try {
    views = await readWorkflowViews(await context.temporalClient(), query);
    visibility = { answered: true, namespace: context.config().temporal.namespace, query, workflows: views.size };
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    visibility = { answered: false, query, error: error instanceof Error ? error.message : String(error) };
  }
  const rows = await listConnections(await context.db(), filters, [...views.keys()]);
  const listed = rows.map((row) => fromDatabase(row, views.get(row.id)));
  const rowIds = new Set(rows.map((row) => row.id));
  for (const [connectionId, view] of views) if (!rowIds.has(connectionId)) listed.push(withoutRow(connectionId, view));
  return { sources: { postgres: { connections: rows.length }, visibility }, connections: listed };
}

function printListing(listing: Awaited<ReturnType<typeof listConnectionsWithWorkflows>>): void {
  const rows = listing.connections.map((row) => [
    row.connectionId,
    row.provider ?? '?',
    row.userId ?? '?',
    row.status ?? '(no row)',
    row.workflow ? `${row.workflow.execution.toLowerCase()}/${row.workflow.connectionStatus ?? '-'}` : '-',
    timeCell(row.workflow?.nextRefreshAt),
    timeCell(row.accessTokenExpiresAt),
    row.lastError?.kind ?? row.workflow?.lastErrorKind ?? '-',
    row.sources.join('+'),
  ]);
  console.log(formatTable(['CONNECTION', 'PROVIDER', 'USER', 'STATUS', 'WORKFLOW', 'NEXT REFRESH', 'TOKEN EXPIRES', 'LAST ERROR', 'SOURCE'], rows));
  const { postgres, visibility } = listing.sources;
  console.log(`\n${listing.connections.length} connection(s). PostgreSQL answered ${postgres.connections} row(s).`);
  console.log(
    visibility.answered
      ? `Temporal visibility (namespace ${visibility.namespace}) answered ${visibility.workflows} workflow(s) for: ${visibility.query}`
      : `Temporal visibility did not answer (${visibility.error}); WORKFLOW and NEXT REFRESH are unknown. Query: ${visibility.query}`,
  );
}

export const connectionsCommand: AdminCommand = {
  name: 'connections',
  synopsis: '[--provider P] [--status S] [--user ID] [--json]',
  summary: 'list connections: status, next refresh and last error, from PostgreSQL and Temporal visibility',
  options: { provider: { type: 'string' }, status: { type: 'string' }, user: { type: 'string' }, json: { type: 'boolean' } },
  positionals: [],
  async run({ values }, context) {
    const provider = stringOption(values, 'provider');
    const status = stringOption(values, 'status');
    const user = stringOption(values, 'user');
    const filters: ConnectionFilters = {
      ...(provider === undefined ? {} : { provider: oneOf(provider, PROVIDER_IDS, '--provider') }),
      ...(status === undefined ? {} : { status: oneOf(status, connectionStatus.options, '--status') }),
      ...(user === undefined ? {} : { userId: uuidArgument(user, '--user') }),
    };
    const listing = await listConnectionsWithWorkflows(context, filters);
    if (values.json) printJson(listing);
    else printListing(listing);
    return 0;
  },
};
