import { defineConfig } from 'vitest/config';

/** `npm run test:chaos`: the fault scenarios of test/chaos (see docs/reliability.md). */
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.chaos.test.ts'],
    globalSetup: ['test/chaos/global-setup.ts'],
    setupFiles: ['test/chaos/setup-run.ts'],
    pool: 'forks',
    // Two scenarios at a time: the worker-kill storm loads both cores, while the others spend most of their
    // time waiting (provider request timeouts of 15 s in real time, retry backoff across a restart).
    maxWorkers: 2,
    // Scenarios in one process run one after another and share the workflow bundle and the loaded modules.
    // Each scenario still has its own servers, fakes and database.
    isolate: false,
    testTimeout: 300_000,
    hookTimeout: 180_000,
  },
});
