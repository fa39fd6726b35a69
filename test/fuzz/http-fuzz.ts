import http from 'node:http';
import fc from 'fast-check';
import pg from 'pg';

/**
 * The pieces of the HTTP fuzz (issue 11, "Bad input"): routes read from an OpenAPI document or from
 * Fastify's route tree, fast-check arbitraries of hostile requests to them, a raw HTTP client that
 * sends what fetch would refuse to, the check of the documented error shapes, and a fingerprint of
 * the database that shows whether a refused request changed anything.
 */

export const FUZZ_SEED = Number(process.env.FUZZ_SEED ?? 20_251_111);

/** What an error answer of the route must look like: the API's `{ error, message }`, RFC 6749's `{ error, error_description }`, an HTML page, or any of them (undocumented routes). */
export type ErrorShape = 'error' | 'oauth' | 'page' | 'any';

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  enum?: unknown[];
  $ref?: string;
}

export interface FuzzRoute {
  method: string;
  /** With `{name}` placeholders. */
  path: string;
  pathParams: string[];
  queryParams: string[];
  headerParams: string[];
  bodyProperties: string[];
  /** Documented error shapes by status (`400`, `4XX`, ...). */
  errorShapes: Map<string, ErrorShape>;
  /** The shape of errors the document does not list for the route (415, 413, 429, ...). */
  defaultErrorShape: ErrorShape;
}

interface OpenApiOperation {
  parameters?: Array<{ in: string; name: string }>;
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
  responses?: Record<string, { content?: Record<string, { schema?: JsonSchema }> }>;
}

export interface OpenApiDocument {
  paths: Record<string, Record<string, OpenApiOperation>>;
}

function shapeOf(schema: JsonSchema | undefined): ErrorShape | undefined {
  if (schema?.$ref?.endsWith('/OAuthError')) return 'oauth';
  if (schema?.$ref?.endsWith('/Error')) return 'error';
  if (schema?.type === 'string') return 'page';
  return undefined;
}

export function routesFromOpenApi(document: OpenApiDocument): FuzzRoute[] {
  return Object.entries(document.paths).flatMap(([path, operations]) =>
    Object.entries(operations).map(([method, operation]) => {
      const parameters = operation.parameters ?? [];
      const named = (where: string) => parameters.filter((parameter) => parameter.in === where).map((parameter) => parameter.name);
      const errorShapes = new Map<string, ErrorShape>();
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        if (!/^[45]/.test(status)) continue;
        const shape = shapeOf(Object.values(response.content ?? {})[0]?.schema);
        if (shape) errorShapes.set(status, shape);
      }
      // A route that answers pages (its 200 is a string) answers its errors as pages too.
      const answersPages = Object.entries(operation.responses ?? {}).some(([status, response]) => status.startsWith('2') && shapeOf(Object.values(response.content ?? {})[0]?.schema) === 'page');
      const documented = [...errorShapes.values(), ...(answersPages ? ['page' as const] : [])];
      const bodySchema = Object.values(operation.requestBody?.content ?? {})[0]?.schema;
      return {
        method: method.toUpperCase(),
        path,
        pathParams: named('path'),
        queryParams: named('query'),
        headerParams: named('header'),
        bodyProperties: Object.keys(bodySchema?.properties ?? {}),
        errorShapes,
        defaultErrorShape: documented.includes('oauth') ? 'oauth' : documented.includes('page') ? 'page' : 'error',
      };
    }),
  );
}

/**
 * A route known only from Fastify's route tree (`METHOD /path/{param}`), without a document of its
 * parameters: every one of the app's `parameterNames` is tried in its query and body, and an error may
 * be in any of the app's shapes.
 */
export function routeFromTree(route: string, parameterNames: string[]): FuzzRoute {
  const [method, path] = route.split(' ') as [string, string];
  return {
    method,
    path,
    pathParams: [...path.matchAll(/\{(\w+)\}/g)].map((match) => match[1]!),
    queryParams: parameterNames,
    headerParams: [],
    bodyProperties: parameterNames,
    errorShapes: new Map(),
    defaultErrorShape: 'any',
  };
}

/** What the fuzz knows of the seeded platform: credentials to send and values that get a request past the first checks. */
export interface FuzzContext {
  /** Authorization header values (a session's bearer, a client's access token, Basic client credentials, ...). */
  authorizations: string[];
  /** Cookie header values (a signed-in browser's). */
  cookies: string[];
  /** Values worth trying for a parameter or body property of this name (ids of sacrificial rows, valid enums). */
  hints: Record<string, string[]>;
}

const HOSTILE_STRINGS = [
  "' OR '1'='1",
  "'; DROP TABLE users; --",
  '" OR 1=1 --',
  "1' UNION SELECT password_hash FROM users --",
  '$1',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  'javascript:alert(1)',
  '../../../../etc/passwd',
  '%00',
  '%zz',
  '%',
  '\u0000',
  'a\u0000b',
  '\uffff',
  '\ud800',
  '😀',
  'ﾟ･✿ヾ╲(｡◕‿◕｡)╱✿･ﾟ',
  'Ω≈ç√∫˜µ≤≥÷',
  '\u202e\u0644\u0627',
  '\r\nX-Injected: 1',
  '${jndi:ldap://127.0.0.1/x}',
  '{{7*7}}',
  'NaN',
  '-1',
  '1e309',
  '9007199254740993',
  'null',
  'true',
  '[]',
  '{}',
  'constructor',
  '__proto__',
  'hasOwnProperty',
  'toString',
  '',
  ' ',
  'x'.repeat(5000),
  'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2lnbmF0dXJl',
  'eyJhbGciOiJSUzI1NiIsImtpZCI6Ii4uLy4uL2V0Yy9wYXNzd2QifQ.eyJleHAiOjF9.',
  'not.a.jwt',
  'a.b.c.d.e',
  '..',
  '00000000-0000-0000-0000-000000000000',
  'ffffffff-ffff-ffff-ffff-ffffffffffff',
  'http://127.0.0.1:1/',
  'https://evil.example/callback',
  '//evil.example',
];

const hostileString = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.uuid().map(String) },
  { weight: 1, arbitrary: fc.integer().map(String) },
);

function valueFor(name: string, context: FuzzContext): fc.Arbitrary<string> {
  const hints = context.hints[name];
  return hints?.length ? fc.oneof({ weight: 1, arbitrary: fc.constantFrom(...hints) }, { weight: 2, arbitrary: hostileString }) : hostileString;
}

const jsonValue = (context: FuzzContext, name: string): fc.Arbitrary<unknown> =>
  fc.oneof(
    { weight: 5, arbitrary: valueFor(name, context) },
    { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null)) },
    { weight: 1, arbitrary: fc.array(valueFor(name, context), { maxLength: 3 }) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  );

/** Keys a hostile client adds: unknown ones, and the ones that reach a prototype. */
const extraKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'extra', 'admin', 'role', 'roles', 'id', 'user_id');

function bodyObject(route: FuzzRoute, context: FuzzContext): fc.Arbitrary<Record<string, unknown>> {
  const known = Object.fromEntries(route.bodyProperties.map((name) => [name, jsonValue(context, name)]));
  return fc
    .tuple(fc.record(known, { requiredKeys: [] }), fc.dictionary(extraKey, jsonValue(context, 'extra'), { maxKeys: 2 }))
    .map(([fields, extra]) => ({ ...fields, ...extra }));
}

function formEncode(fields: Record<string, unknown>): string {
  const form = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) {
    for (const item of Array.isArray(value) ? value : [value]) form.append(name, typeof item === 'string' ? item : JSON.stringify(item) ?? '');
  }
  return form.toString();
}

const XML_BODIES = [
  '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "bbbbbbbbbb"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]><a>&d;</a>',
  '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
  '<a><b>unclosed',
  '<OTA_HotelResNotifRQ><HotelReservations/></OTA_HotelResNotifRQ>',
];

const BROKEN_JSON = ['{', '{"a":', '{"a":1,}', "{'a':1}", '[1,2', '"unterminated', 'nul', '{"a":1}{"b":2}', '\ufeff{"a":1}', '{"__proto__":{"polluted":true}}', '['.repeat(5000) + ']'.repeat(5000), '{"a":'.repeat(2000) + '1' + '}'.repeat(2000)];

/** A body: usually the route's own fields (hostile values, extra keys) in JSON or form encoding; else broken JSON, XML, JWTs, huge or empty. */
function body(route: FuzzRoute, context: FuzzContext): fc.Arbitrary<string | Buffer | undefined> {
  return fc.oneof(
    { weight: 5, arbitrary: bodyObject(route, context).map((fields) => JSON.stringify(fields)) },
    { weight: 3, arbitrary: bodyObject(route, context).map(formEncode) },
    { weight: 1, arbitrary: fc.constantFrom(...BROKEN_JSON) },
    { weight: 1, arbitrary: fc.constantFrom(...XML_BODIES) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)) },
    { weight: 1, arbitrary: fc.constantFrom('', undefined) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)) },
    // Past every body limit (Fastify's 1 MiB default).
    { weight: 1, arbitrary: fc.constantFrom(JSON.stringify({ padding: 'x'.repeat(1_200_000) }), `token=${'A'.repeat(1_100_000)}`) },
  );
}

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'application/x-www-form-urlencoded',
  'text/plain',
  'application/xml',
  'text/xml',
  'multipart/form-data; boundary=x',
  'application/jwt',
  'application/secevent+jwt',
  'application/octet-stream',
  '*/*',
  'application/json, text/html',
  ';;;',
  'application/x-www-form-urlencoded; charset=utf-8; boundary=',
];

/** Header values a raw client may send (node refuses control characters and anything past Latin-1). */
function headerSafe(value: string): string {
  return value.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?');
}

function headers(route: FuzzRoute, context: FuzzContext, withBody: boolean): fc.Arbitrary<Record<string, string | string[]>> {
  const authorization = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...context.authorizations) },
    { weight: 2, arbitrary: hostileString.map((value) => `Bearer ${value}`) },
    { weight: 1, arbitrary: fc.constantFrom('Bearer', 'Bearer ', 'Basic', 'Basic !!!', `Basic ${Buffer.from(':').toString('base64')}`, 'Digest x', 'bearer  x  y', 'Bearer a b') },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...context.authorizations), fc.constantFrom(...context.authorizations)).map(([a, b]) => [a, b]) },
  );
  const optional = {
    authorization,
    cookie: fc.oneof(fc.constantFrom(...(context.cookies.length ? context.cookies : ['pm_session=x'])), hostileString.map((value) => `pm_session=${value}; portal_session=${value}`)),
    'content-type': withBody ? fc.constantFrom(...CONTENT_TYPES) : fc.constantFrom('application/json', 'text/plain'),
    'x-forwarded-for': fc.constantFrom('127.0.0.1, 10.0.0.1', 'not-an-ip', '::1', '1.1.1.1'.repeat(200)),
    'x-request-id': hostileString,
    host: fc.constantFrom('evil.example', 'localhost:0', '[::1]:99999', 'a'.repeat(300)),
    origin: fc.constantFrom('null', 'https://evil.example', 'http://127.0.0.1'),
    accept: fc.constantFrom('text/html', 'application/xml', '*/*;q=abc', 'application/json'),
    'accept-language': hostileString,
    ...Object.fromEntries(route.headerParams.map((name) => [name, valueFor(name, context)])),
  };
  return fc.record(optional, { requiredKeys: [] }).map((record) =>
    Object.fromEntries(Object.entries(record).map(([name, value]) => [name, Array.isArray(value) ? value.map(headerSafe) : headerSafe(value)])),
  );
}

/** A path segment: percent-encoded, or raw printable (malformed escapes, dots and slashes included). */
function pathSegment(name: string, context: FuzzContext): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: valueFor(name, context).map((value) => percentEncode(value).slice(0, 4000) || '%20') },
    { weight: 1, arbitrary: valueFor(name, context).map((value) => value.replace(/[^\x21-\x7e]/g, '').replace(/[?#]/g, '') || '..') },
  );
}

/** encodeURIComponent, except that a lone surrogate goes out as the bytes of its UTF-16 code unit in UTF-8 (WTF-8) rather than throwing. */
function percentEncode(value: string): string {
  return [...value].map((character) => (/[\ud800-\udfff]/.test(character) ? '%ED%A0%80' : encodeURIComponent(character))).join('');
}

export interface RawRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body?: string | Buffer;
}

export function fuzzRequest(route: FuzzRoute, context: FuzzContext): fc.Arbitrary<RawRequest> {
  const path = fc
    .tuple(...route.pathParams.map((name) => pathSegment(name, context)))
    .map((segments) => route.pathParams.reduce((built, name, index) => built.replace(`{${name}}`, segments[index]!), route.path));
  const queryNames = [...route.queryParams, ...route.bodyProperties.slice(0, 3)];
  const query = fc.array(fc.tuple(queryNames.length ? fc.oneof(fc.constantFrom(...queryNames), extraKey) : extraKey, fc.oneof(valueFor('query', context), ...queryNames.map((name) => valueFor(name, context)))), { maxLength: 6 });
  const hasBody = route.method !== 'GET' && route.method !== 'DELETE';
  return fc
    .tuple(path, query, hasBody ? body(route, context) : fc.option(body(route, context), { freq: 8, nil: undefined }), fc.boolean())
    .chain(([builtPath, pairs, builtBody, rawQuery]) =>
      headers(route, context, builtBody !== undefined).map((builtHeaders) => {
        const search = rawQuery
          ? pairs.map(([name, value]) => `${name}=${value.replace(/[^\x21-\x7e]/g, '').replace(/#/g, '')}`).join('&')
          : new URLSearchParams(pairs).toString();
        return { method: route.method, path: `${builtPath}${search ? `?${search}` : ''}`, headers: builtHeaders, ...(builtBody === undefined ? {} : { body: builtBody }) };
      }),
    );
}

export interface RawResponse {
  status: number;
  contentType: string;
  text: string;
}

/** Sends the request as written, with node's http (fetch would normalise or refuse half of it). */
export function send(baseUrl: string, request: RawRequest): Promise<RawResponse> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    // Framed by its length: node sends a GET's or DELETE's body unframed, which the server would read as a second request.
    const length = request.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(request.body)) };
    const outgoing = http.request(
      { host: url.hostname, port: url.port, method: request.method, path: request.path, headers: { ...request.headers, ...length }, setHost: !('host' in request.headers), agent: false },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, contentType: String(response.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end(request.body);
  });
}

function documentedShape(route: FuzzRoute, status: number): ErrorShape {
  return route.errorShapes.get(String(status)) ?? route.errorShapes.get(`${String(status)[0]}XX`) ?? route.defaultErrorShape;
}

/** Why an error answer is not in the shape the route documents; undefined when it is. */
export function errorShapeViolation(route: FuzzRoute, response: RawResponse, oauthErrorCodes: readonly string[]): string | undefined {
  if (response.status < 400) return undefined;
  const shape = documentedShape(route, response.status);
  const json = response.contentType.startsWith('application/json') ? parseJson(response.text) : undefined;
  const record = json && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
  // Fastify's own refusals before a route's handler (body limit, content type) leave through the app's
  // error handler, so every shape also admits the API's `{ error, message }` when the route is not OAuth.
  const isApiError = record !== undefined && typeof record.error === 'string' && typeof record.message === 'string';
  const isOAuthError =
    record !== undefined && typeof record.error === 'string' && oauthErrorCodes.includes(record.error) && (record.error_description === undefined || typeof record.error_description === 'string');
  if (shape === 'oauth' && isOAuthError) return undefined;
  if (shape === 'error' && isApiError) return undefined;
  if (shape === 'page' && (response.contentType.startsWith('text/html') || isApiError)) return undefined;
  if (shape === 'any' && (response.contentType.startsWith('text/html') || isApiError || isOAuthError)) return undefined;
  return `${response.status} is not the documented ${shape} shape: ${response.contentType} ${response.text.slice(0, 300)}`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Bookkeeping a refused request may rightly change: the audit log, a session's last use (the idle
 * timeout slides on every authenticated request) and the failed sign-ins the lockout counts.
 */
const MAY_CHANGE = { tables: new Set(['audit_log', 'user_login_failures', 'portal_login_failures']), columns: new Set(['last_seen_at']) };

/** One checksum per table (every column but the bookkeeping ones), to tell whether a request changed anything. */
export class DatabaseFingerprint {
  private constructor(
    private readonly client: pg.Client,
    private readonly statement: string,
  ) {}

  static async of(databaseUrl: string): Promise<DatabaseFingerprint> {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    const columns = await client.query<{ table_name: string; column_name: string }>(
      `SELECT c.table_name, c.column_name FROM information_schema.columns c
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
        WHERE c.table_schema = 'public' ORDER BY c.table_name, c.ordinal_position`,
    );
    const byTable = new Map<string, string[]>();
    for (const { table_name: table, column_name: column } of columns.rows) {
      if (MAY_CHANGE.tables.has(table) || MAY_CHANGE.columns.has(column)) continue;
      byTable.set(table, [...(byTable.get(table) ?? []), client.escapeIdentifier(column)]);
    }
    const statement = [...byTable]
      .map(([table, names]) => {
        const row = `ROW(${names.join(', ')})::text`;
        return `SELECT ${client.escapeLiteral(table)} AS name, count(*)::int AS rows, md5(coalesce(string_agg(${row}, ',' ORDER BY ${row}), '')) AS sum FROM ${client.escapeIdentifier(table)}`;
      })
      .join(' UNION ALL ');
    return new DatabaseFingerprint(client, statement);
  }

  async take(): Promise<Map<string, string>> {
    const result = await this.client.query<{ name: string; rows: number; sum: string }>(this.statement);
    return new Map(result.rows.map((row) => [row.name, `${row.rows}:${row.sum}`]));
  }

  static changedTables(before: Map<string, string>, after: Map<string, string>): string[] {
    return [...after].filter(([table, sum]) => before.get(table) !== sum).map(([table]) => table);
  }

  close(): Promise<void> {
    return this.client.end();
  }
}

/** What failed first, then fast-check's report (seed, path, counterexample) with long values cut. */
export function fuzzFailure(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  const reason = cause instanceof Error ? cause.message : '';
  return `${reason}\n${String((error as Error).message).replace(/(.)\1{60,}/g, (run, character: string) => `${character}…(${run.length})`).slice(0, 1500)}`;
}
