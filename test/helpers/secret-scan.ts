import { Writable } from 'node:stream';
import pg from 'pg';
import { Client, type Connection } from '@temporalio/client';
import type { PayloadCodec } from '@temporalio/common';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { everyIssuedSecret } from '../../fakes/issued-secrets';
import { historyTexts } from './history';
import { decodeHistoryPayloads } from './payload-history';
import type { TestPlatform } from './platform';

/**
 * The secret scan of issue 11: every token, code and secret the fakes issued (fakes/issued-secrets.ts)
 * looked for in every text, bytea and JSON column of a database, in the raw bytes Temporal stores for
 * every workflow history of a server, and in captured log lines. Ciphertexts and hashes never contain
 * a secret; a plaintext copy, whole or inside a larger value, is a hit. Run it before the test data is
 * dropped: at the end of a test file (see `expectNoSecretLeft`) or of a chaos scenario.
 */

export interface SecretHit {
  /** Where the secret was found: `table.column (row n)`, `history <workflowId>/<runId>` or `log line n`. */
  where: string;
  /** The start of the secret only, so the report itself leaks nothing usable. */
  secretPrefix: string;
}

// Every fake's secrets are far longer; shorter strings would match by chance.
const MIN_SECRET_LENGTH = 12;
const KEY_LENGTH = MIN_SECRET_LENGTH;
/** The first four characters at `index` packed into one number: a cheap first look that rules out almost every position. */
function prefixAt(text: string, index: number): number {
  return (((text.charCodeAt(index) & 0xff) << 24) | ((text.charCodeAt(index + 1) & 0xff) << 16) | ((text.charCodeAt(index + 2) & 0xff) << 8) | (text.charCodeAt(index + 3) & 0xff)) >>> 0;
}

/**
 * Finds any of many secrets in a text in one pass: positions by a number made of their first four
 * characters (no string is cut for most of them), then candidates by their first twelve, then a full compare.
 */
export class SecretIndex {
  private readonly byKey = new Map<string, string[]>();
  private readonly prefixes = new Set<number>();
  readonly size: number;

  constructor(secrets: Iterable<string>) {
    let size = 0;
    for (const secret of new Set(secrets)) {
      if (secret.length < MIN_SECRET_LENGTH) continue;
      size += 1;
      // Query strings and form bodies carry a secret percent-encoded (Amazon's `Atza|…` as `Atza%7C…`).
      for (const form of new Set([secret, encodeURIComponent(secret)])) {
        const key = form.slice(0, KEY_LENGTH);
        const list = this.byKey.get(key) ?? [];
        list.push(form);
        this.byKey.set(key, list);
        this.prefixes.add(prefixAt(form, 0));
      }
    }
    this.size = size;
  }

  /** The secrets `text` contains (their encoded forms count as the secret). */
  find(text: string): string[] {
    const found: string[] = [];
    if (this.size === 0) return found;
    for (let index = 0; index + KEY_LENGTH <= text.length; index += 1) {
      if (!this.prefixes.has(prefixAt(text, index))) continue;
      const candidates = this.byKey.get(text.slice(index, index + KEY_LENGTH));
      if (!candidates) continue;
      for (const candidate of candidates) if (text.startsWith(candidate, index)) found.push(candidate);
    }
    return found;
  }
}

function hits(index: SecretIndex, text: string, where: string): SecretHit[] {
  return index.find(text).map((secret) => ({ where, secretPrefix: `${secret.slice(0, 8)}…` }));
}

const SCANNED_TYPES = new Set(['text', 'character varying', 'character', 'bytea', 'json', 'jsonb', 'ARRAY', 'USER-DEFINED']);

/** Every value of every text-like column of every table in the database's public schema; `rows` counts the rows read. */
export async function scanDatabase(databaseUrl: string, index: SecretIndex): Promise<{ rows: number; hits: SecretHit[] }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const columns = await client.query<{ table_name: string; column_name: string; data_type: string }>(
      `SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
        WHERE c.table_schema = 'public' ORDER BY c.table_name, c.ordinal_position`,
    );
    const byTable = new Map<string, Array<{ name: string; bytes: boolean }>>();
    for (const column of columns.rows) {
      if (!SCANNED_TYPES.has(column.data_type)) continue;
      const list = byTable.get(column.table_name) ?? [];
      list.push({ name: column.column_name, bytes: column.data_type === 'bytea' });
      byTable.set(column.table_name, list);
    }
    const found: SecretHit[] = [];
    let rowsRead = 0;
    for (const [table, tableColumns] of byTable) {
      // bytea as its bytes; everything else as PostgreSQL prints it (JSON, arrays and enums included).
      const select = tableColumns.map(({ name, bytes }) => (bytes ? client.escapeIdentifier(name) : `${client.escapeIdentifier(name)}::text`)).join(', ');
      const rows = await client.query<Record<string, string | Buffer | null>>({ text: `SELECT ${select} FROM ${client.escapeIdentifier(table)}`, rowMode: 'array' } as pg.QueryConfig);
      rowsRead += rows.rows.length;
      (rows.rows as unknown as Array<Array<string | Buffer | null>>).forEach((row, rowNumber) => {
        row.forEach((value, columnIndex) => {
          if (value === null) return;
          const text = Buffer.isBuffer(value) ? value.toString('latin1') : value;
          found.push(...hits(index, text, `${table}.${tableColumns[columnIndex]!.name} (row ${rowNumber + 1})`));
        });
      });
    }
    return { rows: rowsRead, hits: found };
  } finally {
    await client.end();
  }
}

/**
 * Every workflow history on the server (open and closed, every run), as the bytes Temporal stores:
 * the history message encoded as on the wire, payloads as the codec left them. With `payloadCodecs`,
 * also what those codecs decode it to: no workflow input, result, signal or update carries a secret.
 */
export async function scanTemporal(
  connection: Connection,
  index: SecretIndex,
  options: { namespace?: string; payloadCodecs?: readonly PayloadCodec[]; workflowIds?: readonly string[] } = {},
): Promise<{ histories: number; hits: SecretHit[] }> {
  const client = new Client({ connection, namespace: options.namespace ?? 'default' });
  const runs: Array<{ workflowId: string; runId?: string }> = [];
  if (options.workflowIds) {
    runs.push(...options.workflowIds.map((workflowId) => ({ workflowId })));
  } else {
    runs.push(...(await everyRun(connection, options.namespace ?? 'default')));
  }
  const found: SecretHit[] = [];
  let next = 0;
  // A few histories at a time: the server answers one while the scan reads another.
  const lane = async () => {
    while (next < runs.length) {
      const run = runs[next++]!;
      const history = await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
      const where = `history ${run.workflowId}/${run.runId ?? 'latest'}`;
      const stored = Buffer.from(temporal.api.history.v1.History.encode(history).finish()).toString('latin1');
      found.push(...hits(index, stored, where));
      if (options.payloadCodecs?.length) {
        const decoded = await decodeHistoryPayloads(history, options.payloadCodecs);
        found.push(...hits(index, historyTexts(decoded).join('\n'), `${where} (decoded)`));
      }
    }
  };
  await Promise.all(Array.from({ length: HISTORIES_IN_FLIGHT }, lane));
  return { histories: runs.length, hits: found };
}

const GRPC_UNIMPLEMENTED = 12;
const HISTORIES_IN_FLIGHT = 8;

/**
 * Every run on the server, from the raw listings (nothing decoded: memos are encrypted): the visibility
 * listing, or where that is missing (the time-skipping server), the open and closed listings.
 */
async function everyRun(connection: Connection, namespace: string): Promise<Array<{ workflowId: string; runId: string }>> {
  const service = connection.workflowService;
  const startTimeFilter = { earliestTime: msToTs(0), latestTime: msToTs(Date.now() + 10 * 365 * 86_400_000) };
  type Page = { executions?: Array<{ execution?: { workflowId?: string | null; runId?: string | null } | null }> | null; nextPageToken?: Uint8Array | null };
  type Listing = (nextPageToken: Uint8Array | undefined) => Promise<Page>;
  const page = (nextPageToken: Uint8Array | undefined) => ({ namespace, ...(nextPageToken ? { nextPageToken } : {}) });
  const visibility: Listing = (nextPageToken) => service.listWorkflowExecutions({ ...page(nextPageToken), pageSize: 1000 });
  const openAndClosed: Listing[] = [
    (nextPageToken) => service.listOpenWorkflowExecutions({ ...page(nextPageToken), maximumPageSize: 1000, startTimeFilter }),
    (nextPageToken) => service.listClosedWorkflowExecutions({ ...page(nextPageToken), maximumPageSize: 1000, startTimeFilter }),
  ];
  const runsOf = async (listings: Listing[]) => {
    const runs: Array<{ workflowId: string; runId: string }> = [];
    for (const list of listings) {
      let nextPageToken: Uint8Array | undefined;
      do {
        const answer = await list(nextPageToken);
        for (const execution of answer.executions ?? []) runs.push({ workflowId: execution.execution!.workflowId!, runId: execution.execution!.runId! });
        nextPageToken = answer.nextPageToken?.length ? answer.nextPageToken : undefined;
      } while (nextPageToken);
    }
    return runs;
  };
  try {
    return await runsOf([visibility]);
  } catch (error) {
    if ((error as { code?: number }).code !== GRPC_UNIMPLEMENTED) throw error;
    return runsOf(openAndClosed);
  }
}

export function scanLog(text: string, index: SecretIndex): SecretHit[] {
  return logLines(text).flatMap((line, lineNumber) => hits(index, line, `log line ${lineNumber + 1}`));
}

function logLines(text: string): string[] {
  const lines = text.split('\n');
  return lines.at(-1) === '' ? lines.slice(0, -1) : lines;
}

/** A pino destination that keeps every line written to it (hand it to startTestPlatform's `logDestination`). */
export class LogCapture extends Writable {
  private chunks: string[] = [];

  constructor() {
    super({
      write: (chunk: Buffer, _encoding, done) => {
        this.chunks.push(chunk.toString('utf8'));
        done();
      },
    });
  }

  get text(): string {
    return this.chunks.join('');
  }
}

export interface SecretScanTarget {
  /** The database of the run (scanned before it is dropped). */
  databaseUrl?: string;
  /** The Temporal server of the run: every history on it. */
  temporal?: { connection: Connection; namespace?: string; payloadCodecs?: readonly PayloadCodec[]; workflowIds?: readonly string[] };
  /** Captured log text (api-server lines, a worker process's stdout and stderr, ...). */
  logs?: readonly string[];
  /** Secrets on top of what the fakes issued: configured client secrets, channel tokens, our own credentials. */
  extraSecrets?: Iterable<string>;
}

export interface SecretScan {
  secretsLookedFor: number;
  historiesScanned: number;
  rowsScanned: number;
  logLinesScanned: number;
  hits: SecretHit[];
}

/** The whole scan: every secret any fake issued (this process and the run's ledger) plus `extraSecrets`, everywhere given. */
export async function scanForSecrets(target: SecretScanTarget): Promise<SecretScan> {
  const index = new SecretIndex([...everyIssuedSecret(), ...(target.extraSecrets ?? [])]);
  const found: SecretHit[] = [];
  let rowsScanned = 0;
  if (target.databaseUrl) {
    const databaseScan = await scanDatabase(target.databaseUrl, index);
    rowsScanned = databaseScan.rows;
    found.push(...databaseScan.hits);
  }
  let historiesScanned = 0;
  if (target.temporal) {
    const temporalScan = await scanTemporal(target.temporal.connection, index, target.temporal);
    historiesScanned = temporalScan.histories;
    found.push(...temporalScan.hits);
  }
  let logLinesScanned = 0;
  for (const log of target.logs ?? []) {
    logLinesScanned += logLines(log).length;
    found.push(...scanLog(log, index));
  }
  return { secretsLookedFor: index.size, historiesScanned, rowsScanned, logLinesScanned, hits: found };
}

/**
 * The scan at the end of a test file, before `platform.close()` drops its database: the database, every
 * history on the platform's Temporal server (as stored, and decoded with the platform's codec) and `logs`.
 */
export function scanPlatformForSecrets(platform: TestPlatform, options: { logs?: readonly string[]; extraSecrets?: Iterable<string> } = {}) {
  return scanForSecrets({
    databaseUrl: platform.config.databaseUrl!,
    temporal: { connection: platform.temporal.connection, namespace: platform.config.temporal.namespace, payloadCodecs: [platform.payloadCodec] },
    ...options,
  });
}
