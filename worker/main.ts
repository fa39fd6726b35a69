import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { NativeConnection, Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { loadConfig, WORKER_NEEDS } from '../platform/config';
import { createLogger, temporalRuntimeLogger } from '../platform/logger';
import { runUntilSignalled } from '../platform/process';
import { createPayloadCodec } from '../platform/payload-codec';
import { checkReadiness, platformReadinessChecks } from '../platform/readiness';
import { createPlatformServices } from '../platform/services';
import { createSsoSessionSync } from '../platform/sso/backchannel-delivery';
import { createConnectionWorker, workerSizing } from './worker';
import { prebuiltWorkflowBundle } from './workflow-bundle';
import { ensureHousekeepingSchedule } from './schedules';
import { connectTemporalClient } from '../platform/temporal';

/** Production entry of the Temporal worker, with /healthz and /readyz for the orchestrator. */
await runUntilSignalled('worker', async () => {
  const config = loadConfig(process.env, WORKER_NEEDS);
  const logger = createLogger(config);
  // One JSON log: the SDK's, the workflows' and the activities' lines (with their workflowId) go through pino too.
  Runtime.install({
    logger: temporalRuntimeLogger(logger, config.logLevel),
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} } },
    shutdownSignals: [],
  });
  const payloadCodec = createPayloadCodec(config.payloadEncryption);
  const services = await createPlatformServices(config, { process: 'worker' });
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const worker = await createConnectionWorker({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    dependencies: { ...services, sso: createSsoSessionSync(config, services), clock: () => new Date() },
    payloadCodec,
    shutdownGraceSeconds: config.workerShutdownGraceSeconds,
    sizing: workerSizing(config),
    workflowBundle: await prebuiltWorkflowBundle(config.workerWorkflowBundlePath),
  });
  const running = worker.run();
  const client = await connectTemporalClient(config.temporal, payloadCodec);
  await ensureHousekeepingSchedule(client, config.temporal.taskQueue);

  const readinessChecks = {
    ...platformReadinessChecks(services.db, client.connection),
    worker: async () => {
      if (worker.getState() !== 'RUNNING') throw new Error(`worker is ${worker.getState()}`);
    },
  };
  const health = createServer((request, response) => {
    const answer = (status: number, body: object) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    if (request.url === '/healthz') return answer(200, { status: 'ok', worker: worker.getState() });
    if (request.url !== '/readyz') return answer(404, { error: 'not_found' });
    void checkReadiness(readinessChecks).then((readiness) => answer(readiness.status === 'ready' ? 200 : 503, readiness));
  });
  const stop = async () => {
    health.close();
    // shutdown() lets running activities finish (up to the worker's grace time) before run() resolves.
    worker.shutdown();
    await running;
    await client.connection.close();
    await connection.close();
    await services.db.end();
  };
  // 'worker started' comes once the health port is listened on, and names it: WORKER_HEALTH_PORT=0 has the system pick one.
  try {
    await new Promise<void>((resolve, reject) => {
      health.once('error', reject);
      health.listen(config.workerHealthPort, config.http.host, () => {
        health.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    // The worker already polls: it stops (and lets what it took finish) before the process exits.
    await stop();
    throw error;
  }
  const { port: healthPort } = health.address() as AddressInfo;
  logger.info({ taskQueue: config.temporal.taskQueue, temporal: config.temporal.address, healthPort }, 'worker started');

  return async () => {
    logger.info({ graceSeconds: config.workerShutdownGraceSeconds }, 'worker stopping: no new tasks, running activities may finish');
    await stop();
  };
});
