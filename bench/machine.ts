import { execFile } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { promisify } from 'node:util';
import pg from 'pg';

const execFileAsync = promisify(execFile);

export interface MachineDescription {
  date: string;
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  temporalCli?: string;
  postgres?: string;
}

/** What a result depends on besides the code: the machine and the versions of what ran. */
export async function describeMachine(options: { temporalCli?: string; databaseUrl?: string } = {}): Promise<MachineDescription> {
  const description: MachineDescription = {
    date: new Date().toISOString(),
    cores: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
  };
  if (options.temporalCli) {
    const { stdout } = await execFileAsync(options.temporalCli, ['--version']);
    description.temporalCli = stdout.trim();
  }
  if (options.databaseUrl) {
    const client = new pg.Client({ connectionString: options.databaseUrl });
    await client.connect();
    description.postgres = (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
    await client.end();
  }
  return description;
}

export function machineMarkdown(machine: MachineDescription): string {
  return [
    `- Machine: ${machine.cores} cores (${machine.cpuModel}), ${machine.memoryGiB} GiB memory`,
    `- Date: ${machine.date}`,
    `- Versions: Node ${machine.node}; ${machine.temporalCli ?? 'Temporal CLI unknown'}; PostgreSQL ${machine.postgres ?? 'unknown'}`,
  ].join('\n');
}
