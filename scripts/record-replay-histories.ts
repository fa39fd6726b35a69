/**
 * `npm run record-histories`: records the workflow histories that test/replay/replay.test.ts replays
 * (test/replay/record.ts and record-sso-session.ts, run by vitest because they drive the platform with
 * the test helpers and the global setup's Postgres and Temporal binaries). Writes
 * test/replay/histories/<scenario>.json.
 */
import { startVitest } from 'vitest/node';

const vitest = await startVitest('test', [], {
  run: true,
  watch: false,
  include: ['test/replay/record.ts', 'test/replay/record-sso-session.ts'],
});
const failed = !vitest || vitest.state.getCountOfFailedTests() > 0 || vitest.state.getUnhandledErrors().length > 0;
await vitest?.close();
if (failed) {
  console.error('recording failed: no history was written unless every scenario passed');
  process.exit(1);
}
console.log('histories written to test/replay/histories/; review them (git diff) and commit');
