import path from 'node:path';
import { writeWorkflowBundle } from '../worker/workflow-bundle';

/**
 * `npm run bundle-workflows [-- <file>]`: the workflow bundle a worker loads with WORKER_WORKFLOW_BUNDLE
 * (default dist/workflow-bundle.js). Build it with the code the worker runs, in the same deployment: a
 * bundle from other code than the worker's activities is a different workflow version.
 */
const outputPath = path.resolve(process.argv[2] ?? 'dist/workflow-bundle.js');
const { bytes } = await writeWorkflowBundle(outputPath);
console.log(`workflow bundle written to ${outputPath} (${Math.round(bytes / 1024)} KB)`);
