import { createPool, SchemaValidationError, type DatabasePool, type Interceptor } from 'slonik';

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

/** Timestamps come back as epoch milliseconds (slonik's default parser), which is what workflows and JSON want. */
export function createDatabasePool(databaseUrl: string, options: { maximumPoolSize?: number } = {}): Promise<DatabasePool> {
  return createPool(databaseUrl, {
    interceptors: [resultParserInterceptor],
    maximumPoolSize: options.maximumPoolSize ?? 10,
    captureStackTrace: false,
  });
}
