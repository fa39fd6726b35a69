import { defineConfig } from 'vitest/config';

/** `npm run test:chaos`: the fault scenarios of test/chaos (see docs/reliability.md). */
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.chaos.test.ts'],
    globalSetup: ['test/chaos/global-setup.ts'],
    pool: 'forks',
    // Each scenario loads both cores on its own (a worker process, a Temporal server, hundreds of workflows).
    maxWorkers: 1,
    testTimeout: 300_000,
    hookTimeout: 180_000,
  },
});
