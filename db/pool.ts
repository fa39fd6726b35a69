import { EventEmitter } from 'node:events';
import { createPgDriverFactory } from '@slonik/pg-driver';
import { createPool, SchemaValidationError, type DatabasePool, type DriverClient, type DriverFactory, type Interceptor } from 'slonik';

export type { DatabasePool } from 'slonik';

/** Validates every `sql.type(schema)` result against its zod schema, so a query's type is a checked fact. */
const resultParserInterceptor: Interceptor = {
  name: 'result-parser',
  transformRow(queryContext, query, row) {
    const { resultParser } = queryContext;
    if (!resultParser) return row;
    const parsed = resultParser.safeParse(row);
    if (!parsed.success) throw new SchemaValidationError(query, row, parsed.error.issues);
    return parsed.data;
  },
};

type Listener = (...args: unknown[]) => void;

/**
 * slonik 47's driver loses a pool slot each time a connection breaks under a running query (the
 * database restarted, the network failed): the client's destroy waits for that query, throws with its
 * error, and never emits `destroy`, so the pool keeps the dead client and, once every slot is lost,
 * queues every request forever. This tells the pool that such a client has ended all the same.
 */
function releasingBrokenClients(factory: DriverFactory): DriverFactory {
  return async (options) => {
    const driver = await factory(options);
    return {
      createClient: async (): Promise<DriverClient> => {
        const client = await driver.createClient();
        const ended = new EventEmitter();
        let announced = false;
        const announceEnd = () => {
          if (announced) return;
          announced = true;
          ended.emit('destroy');
        };
        client.on('destroy', announceEnd);
        // The driver's own error listener (registered first) has started the destroy; this one watches how it ends.
        client.on('error', () => void client.destroy().catch(announceEnd));
        const destroy = () => client.destroy().catch((error: unknown) => {
          announceEnd();
          throw error;
        });
        // The pool learns of the end from these 'destroy' listeners; every other event is the client's own.
        const events = client as unknown as { on(event: string, listener: Listener): unknown; off(event: string, listener: Listener): unknown };
        const on = (event: string, listener: Listener) => {
          if (event === 'destroy') ended.on(event, listener);
          else events.on(event, listener);
          return wrapped;
        };
        const off = (event: string, listener: Listener) => {
          if (event === 'destroy') ended.off(event, listener);
          else events.off(event, listener);
          return wrapped;
        };
        const wrapped = { ...client, destroy, on, off, removeListener: off } as unknown as DriverClient;
        return wrapped;
      },
    };
  };
}

export interface DatabasePoolOptions {
  /** Connections the pool opens at most (DATABASE_POOL_SIZE); requests beyond them queue. */
  maximumPoolSize?: number;
  /** How long opening a connection may take (DATABASE_CONNECTION_TIMEOUT_MS). */
  connectionTimeoutMs?: number;
  /** PostgreSQL's statement_timeout (DATABASE_STATEMENT_TIMEOUT_MS); slonik's 60 s when absent. */
  statementTimeoutMs?: number;
  /** PostgreSQL's lock_timeout (DATABASE_LOCK_TIMEOUT_MS); locks are waited for without end when absent. */
  lockTimeoutMs?: number;
}

/** The URL with a setting every session of the pool starts with (libpq's `options`, kept alongside any the URL has). */
function withSessionSetting(databaseUrl: string, name: string, value: number): string {
  const url = new URL(databaseUrl);
  url.searchParams.set('options', [url.searchParams.get('options'), `-c ${name}=${value}`].filter(Boolean).join(' '));
  return url.toString();
}

/**
 * Timestamps come back as epoch milliseconds (slonik's default parser), which is what workflows and JSON want.
 *
 * While the database is unreachable every request fails fast, with one connection attempt bounded by
 * the connection timeout (slonik would try three times), so callers answer "try again" (503) well within
 * a voice platform's patience rather than hanging; broken connections leave the pool, so it recovers by
 * itself once the database is back. A database that is up but slow (a long statement, a lock held by
 * another transaction) is bounded the same way by the statement and lock timeouts, when given.
 */
export function createDatabasePool(databaseUrl: string, options: DatabasePoolOptions = {}): Promise<DatabasePool> {
  const { lockTimeoutMs, statementTimeoutMs } = options;
  return createPool(lockTimeoutMs === undefined ? databaseUrl : withSessionSetting(databaseUrl, 'lock_timeout', lockTimeoutMs), {
    driverFactory: releasingBrokenClients(createPgDriverFactory()),
    interceptors: [resultParserInterceptor],
    maximumPoolSize: options.maximumPoolSize ?? 10,
    connectionTimeout: options.connectionTimeoutMs ?? 2000,
    connectionRetryLimit: 0,
    captureStackTrace: false,
    ...(statementTimeoutMs === undefined ? {} : { statementTimeout: statementTimeoutMs }),
  });
}
