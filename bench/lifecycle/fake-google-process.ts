import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startFakeGoogle } from '../../fakes/google';

/**
 * The fake Google of the lifecycle bench, in a process of its own so that its CPU is not the bench's
 * or the worker's. Every authorization is approved by a new Google account (`sub`), so each user of
 * the bench has its own. Prints one JSON line with its URLs; `GET <statsUrl>?from=<i>` answers the
 * calls it recorded from index i on.
 */

const clientId = process.env.BENCH_GOOGLE_CLIENT_ID!;
const clientSecret = process.env.BENCH_GOOGLE_CLIENT_SECRET!;
const accessTokenLifetimeSeconds = Number(process.env.BENCH_ACCESS_TOKEN_LIFETIME_SECONDS);

const google = await startFakeGoogle({ clientId, clientSecret, accessTokenLifetimeSeconds });

const stats = createServer((request, response) => {
  const url = new URL(request.url ?? '/', 'http://127.0.0.1');
  if (url.pathname !== '/calls') {
    response.writeHead(404).end();
    return;
  }
  const from = Number(url.searchParams.get('from') ?? 0);
  response.writeHead(200, { 'content-type': 'application/json' });
  response.end(JSON.stringify({ total: google.calls.length, calls: google.calls.slice(from) }));
});
await new Promise<void>((resolve) => stats.listen(0, '127.0.0.1', resolve));
const statsPort = (stats.address() as AddressInfo).port;

console.log(JSON.stringify({
  url: google.url,
  authorizeUrl: google.authorizeUrl,
  tokenUrl: google.tokenUrl,
  revokeUrl: google.revokeUrl,
  calendarApiUrl: google.calendarApiUrl,
  riscJwksUrl: google.riscJwksUrl,
  statsUrl: `http://127.0.0.1:${statsPort}/calls`,
}));

const stop = () => {
  stats.close();
  void google.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
