import { createServer } from 'node:http';
import { NativeConnection, Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { sql } from 'slonik';
import pino from 'pino';
import { loadConfig, WORKER_NEEDS } from './config';
import { loggerOptions } from './logger';
import { runUntilSignalled } from './process';
import { createPayloadCodec } from './payload-codec';
import { createPlatformServices } from './services';
import { createConnectionWorker } from './worker';
import { ensureHousekeepingSchedule } from './schedules';
import { connectTemporalClient } from './temporal';

/** Production entry of the Temporal worker, with /healthz and /readyz for the orchestrator. */
await runUntilSignalled('worker', async () => {
  const config = loadConfig(process.env, WORKER_NEEDS);
  const logger = pino(loggerOptions(config));
  Runtime.install({ telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }) } }, shutdownSignals: [] });
  const payloadCodec = createPayloadCodec(config.payloadEncryption);
  const services = await createPlatformServices(config);
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const worker = await createConnectionWorker({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    dependencies: { ...services, clock: () => new Date() },
    payloadCodec,
  });
  const running = worker.run();
  const client = await connectTemporalClient(config.temporal, payloadCodec);
  await ensureHousekeepingSchedule(client, config.temporal.taskQueue);

  const health = createServer((request, response) => {
    const answer = (status: number, body: object) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    if (request.url === '/healthz') return answer(200, { status: 'ok', worker: worker.getState() });
    if (request.url !== '/readyz') return answer(404, { error: 'not_found' });
    void services.db
      .oneFirst(sql.unsafe`SELECT 1`)
      .then(() => worker.getState() === 'RUNNING', () => false)
      .then((ready) => answer(ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', worker: worker.getState() }));
  });
  health.listen(config.workerHealthPort, config.http.host);
  logger.info({ taskQueue: config.temporal.taskQueue, temporal: config.temporal.address, healthPort: config.workerHealthPort }, 'worker started');

  return async () => {
    health.close();
    // shutdown() lets running activities finish (up to the worker's grace time) before run() resolves.
    worker.shutdown();
    await running;
    await client.connection.close();
    await connection.close();
    await services.db.end();
  };
});
