import { createServer } from 'node:http';
import { NativeConnection, Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { sql } from 'slonik';
import pino from 'pino';
import { loadConfig } from './config';
import { loggerOptions } from './logger';
import { runUntilSignalled } from './process';
import { createPlatformServices } from './services';
import { createConnectionWorker } from './worker';

/** Production entry of the Temporal worker, with /healthz and /readyz for the orchestrator. */
await runUntilSignalled('worker', async () => {
  const config = loadConfig(process.env, ['DATABASE_URL', 'INTEGRATION_ENCRYPTION_KEY']);
  const logger = pino(loggerOptions(config));
  Runtime.install({ telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }) } }, shutdownSignals: [] });
  const services = await createPlatformServices(config);
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const worker = await createConnectionWorker({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    dependencies: { ...services, clock: () => new Date() },
  });
  const running = worker.run();

  const health = createServer((request, response) => {
    const ready = request.url === '/readyz'
      ? services.db.oneFirst(sql.unsafe`SELECT 1`).then(() => worker.getState() === 'RUNNING', () => false)
      : Promise.resolve(request.url === '/healthz');
    void ready.then((ok) => {
      response.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ status: ok ? 'ok' : 'unavailable', worker: worker.getState() }));
    });
  });
  health.listen(config.workerHealthPort, config.http.host);
  logger.info({ taskQueue: config.temporal.taskQueue, temporal: config.temporal.address, healthPort: config.workerHealthPort }, 'worker started');

  return async () => {
    health.close();
    // shutdown() lets running activities finish (up to the worker's grace time) before run() resolves.
    worker.shutdown();
    await running;
    await connection.close();
    await services.db.end();
  };
});
