import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/** What one CLI run printed, and its exit status. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

const cliPath = new URL('../src/cli.ts', import.meta.url).pathname;
const root = new URL('../../../', import.meta.url).pathname;

/** Runs the CLI as a user would (a new Node process over the sources, from the repository root). */
export async function lowrank(...args: string[]): Promise<CliRun> {
  try {
    const r = await promisify(execFile)(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', cliPath, ...args],
      { cwd: root, env: { ...process.env, LOWRANK_DEBUG: '' } },
    );
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as CliRun;
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}
