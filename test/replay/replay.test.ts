import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { History } from '@temporalio/common/lib/proto-utils';
import { DefaultLogger, Runtime, Worker, type ReplayResult } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../../worker/worker';
import * as workflows from '../../workflows';
import { historyFromJsonObject } from './history-json';

/**
 * Replays every committed history (test/replay/histories, recorded by `npm run record-histories`)
 * with the current workflow code: a change that would break a live run of that shape fails here.
 * See "Changing a workflow that has live runs" in the README.
 */

const HISTORIES_DIR = fileURLToPath(new URL('./histories', import.meta.url));

// Worker state changes are not news in a test run; warnings and errors still show.
try {
  Runtime.install({ logger: new DefaultLogger('WARN') });
} catch {
  // installed already in this process
}

interface RecordedHistory {
  file: string;
  workflowType: string;
  history: History;
}

async function committedHistories(): Promise<RecordedHistory[]> {
  const files = (await readdir(HISTORIES_DIR, { recursive: true })).filter((file) => file.endsWith('.json')).sort();
  return Promise.all(
    files.map(async (file) => {
      const history = historyFromJsonObject(JSON.parse(await readFile(path.join(HISTORIES_DIR, file), 'utf8')));
      const workflowType = history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name;
      if (!workflowType) throw new Error(`${file}: the first event is not WorkflowExecutionStarted`);
      return { file, workflowType, history };
    }),
  );
}

/** Every workflow type the worker registers: what workflows/index.ts exports. */
const WORKFLOW_TYPES = Object.entries(workflows)
  .filter(([, value]) => typeof value === 'function')
  .map(([name]) => name)
  .sort();

describe('workflow replay over committed histories', () => {
  it('covers every workflow type the worker registers', async () => {
    expect(WORKFLOW_TYPES).toContain('connectionWorkflow');
    const covered = [...new Set((await committedHistories()).map((recorded) => recorded.workflowType))].sort();
    // A new workflow type needs a recorded history (test/replay/record.ts); a removed one's histories go.
    expect(covered).toEqual(WORKFLOW_TYPES);
  });

  it('replays every history deterministically with the current workflow code', { timeout: 120_000 }, async () => {
    const recorded = await committedHistories();
    expect(recorded.length).toBeGreaterThanOrEqual(WORKFLOW_TYPES.length);
    const results: ReplayResult[] = [];
    // The file name stands in for the workflow id, so a failure names the history that broke.
    const histories = recorded.map(({ file, history }) => ({ workflowId: file, history }));
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH, replayName: 'replay-test' }, histories)) results.push(result);

    expect(results.map((result) => result.workflowId)).toEqual(recorded.map((entry) => entry.file));
    const failures = results.filter((result) => result.error).map((result) => `${result.workflowId}: ${result.error!.name}: ${result.error!.message}`);
    expect(failures).toEqual([]);
  });
});
