import { defineConfig } from 'vitest/config';

/** `npm run test:chaos`: the fault scenarios of test/chaos (see docs/reliability.md). */
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.chaos.test.ts'],
    globalSetup: ['test/chaos/global-setup.ts'],
    setupFiles: ['test/chaos/setup-run.ts'],
    pool: 'forks',
    // One scenario at a time: on a 2-core CI machine the worker-kill storm loads both cores, and a scenario
    // beside it would see its timings (and so its outcomes) shift from run to run.
    maxWorkers: 1,
    // Scenarios in one process run one after another and share the workflow bundle and the loaded modules.
    // Each scenario still has its own servers, fakes and database.
    isolate: false,
    testTimeout: 300_000,
    hookTimeout: 180_000,
  },
});
