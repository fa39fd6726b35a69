import { connect, createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { buildApiServer } from '../../api/app';
import { buildRealityServer } from '../../api/reality/app';
import { createDatabasePool, type DatabasePool } from '../../db/pool';
import { loadConfig } from '../../platform/config';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { freePort } from '../helpers/ports';
import { startTemporalDevServer } from '../helpers/temporal';

/** Readiness = database and Temporal reachable, for the reality-server and the api-server alike (the worker's: see graceful-shutdown.test.ts). */
describe('health and readiness', () => {
  const config = loadConfig({ APP_ENV: 'test', LOG_LEVEL: 'silent' });
  let temporal: TestWorkflowEnvironment;
  let database: TestDatabase;
  let db: DatabasePool;
  // A pool whose Postgres went away after start, and a Temporal connection to a port nobody listens on.
  let deadDb: DatabasePool;
  let deadTemporal: Connection;
  let oauthServer: OAuthTestServer;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    database = await createTestDatabase(inject('databaseUrl'));
    db = await createDatabasePool(database.url);
    const proxy = await startTcpProxy(new URL(database.url));
    deadDb = await createDatabasePool(proxy.url);
    await proxy.stop();
    // Without the client's retry interceptor no retry timer outlives the probe, so closing it at the end cannot throw.
    deadTemporal = Connection.lazy({ address: `127.0.0.1:${await freePort()}`, interceptors: [] });
    oauthServer = await startOAuthTestServer();
  });

  afterAll(async () => {
    await oauthServer?.close();
    await deadTemporal?.close().catch(() => undefined);
    await deadDb?.end();
    await db?.end();
    await database?.drop();
    await temporal?.teardown();
  });

  async function reality(services: { db: DatabasePool; connection: Connection }) {
    const app = await buildRealityServer({ config, db: services.db, temporal: new Client({ connection: services.connection }) });
    const [live, ready] = [await app.inject({ url: '/healthz' }), await app.inject({ url: '/readyz' })];
    await app.close();
    return { live, ready };
  }

  it('reality-server: live, and ready when the database and Temporal are reachable', async () => {
    const { live, ready } = await reality({ db, connection: temporal.connection });
    expect(live.statusCode).toBe(200);
    expect(live.json()).toEqual({ status: 'ok' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready', checks: { database: 'ok', temporal: 'ok' } });
  });

  it('reality-server: 503 naming the database when Postgres is unreachable, still live', async () => {
    const { live, ready } = await reality({ db: deadDb, connection: temporal.connection });
    expect(live.statusCode).toBe(200);
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toEqual({ status: 'not_ready', checks: { database: expect.stringMatching(/^failed: /), temporal: 'ok' } });
  });

  it('reality-server: 503 naming Temporal when it is unreachable', async () => {
    const { ready } = await reality({ db, connection: deadTemporal });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toEqual({ status: 'not_ready', checks: { database: 'ok', temporal: expect.stringMatching(/^failed: /) } });
  });

  it('reality-server: 503 naming Temporal when it accepts connections and never answers (the probe gives up, it does not hang)', async () => {
    const silent = await startSilentServer();
    const hanging = Connection.lazy({ address: `127.0.0.1:${silent.port}`, interceptors: [] });
    try {
      const { ready } = await reality({ db, connection: hanging });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toEqual({ status: 'not_ready', checks: { database: 'ok', temporal: expect.stringMatching(/^failed: /) } });
    } finally {
      await hanging.close().catch(() => undefined);
      await silent.stop();
    }
  });

  it('api-server: ready only with Temporal reachable too', async () => {
    // The OAuth test server's Temporal connection points at a closed port.
    const unready = await fetch(`${oauthServer.url}/readyz`);
    expect(unready.status).toBe(503);
    expect(await unready.json()).toEqual({ status: 'not_ready', checks: { database: 'ok', temporal: expect.stringMatching(/^failed: /) } });

    const app = await buildApiServer({ ...oauthServer, temporal: new Client({ connection: temporal.connection }) });
    const ready = await app.inject({ url: '/readyz' });
    await app.close();
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready', checks: { database: 'ok', temporal: 'ok' } });
  });
});

/** Forwards a port to Postgres until stopped; then every connection through it breaks and new ones are refused. */
async function startTcpProxy(target: URL): Promise<{ url: string; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => socket.destroy());
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(upstream).pipe(client);
  });
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    async stop() {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/** A TCP server that accepts connections and never says a word, like a half-open peer. */
async function startSilentServer(): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
  });
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
  return {
    port,
    async stop() {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
