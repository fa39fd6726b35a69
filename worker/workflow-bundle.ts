import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { ConfigError } from '../platform/config';
import { WORKFLOWS_PATH } from './worker';

/**
 * Writes the workflow code as one bundle file for WORKER_WORKFLOW_BUNDLE. A worker without it bundles
 * at every start: seconds of CPU, and webpack's memory stays in the process for its whole life
 * (about 140 MB of resident memory here).
 */
export async function writeWorkflowBundle(outputPath: string): Promise<{ bytes: number }> {
  const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH });
  await mkdir(path.dirname(outputPath), { recursive: true });
  await writeFile(outputPath, code);
  return { bytes: Buffer.byteLength(code) };
}

/** The bundle WORKER_WORKFLOW_BUNDLE names, checked where the worker runs (a path in a container image means nothing elsewhere). */
export async function prebuiltWorkflowBundle(bundlePath: string | undefined): Promise<{ codePath: string } | undefined> {
  if (bundlePath === undefined) return undefined;
  try {
    await access(bundlePath);
  } catch {
    throw new ConfigError([`WORKER_WORKFLOW_BUNDLE: no file at ${bundlePath} (build it with npm run bundle-workflows)`]);
  }
  return { codePath: bundlePath };
}
