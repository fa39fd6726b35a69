/**
 * `temporal server start-dev` arguments that make Temporal dispatch a backlog in priority order
 * (workflows/task-priorities.ts), as deploy/temporal-dynamic-config.yaml does for docker-compose.yml:
 * the new matcher (the default from Temporal 1.30 on; said explicitly for older servers), and task
 * queues of one partition, since the matcher orders by priority within a partition and a poll is
 * answered from one. One partition serves a single worker's throughput (bench/RESULTS.md).
 */
export const PRIORITY_DISPATCH_ARGS = [
  '--dynamic-config-value',
  'matching.useNewMatcher=true',
  '--dynamic-config-value',
  'matching.numTaskqueueReadPartitions=1',
  '--dynamic-config-value',
  'matching.numTaskqueueWritePartitions=1',
];
