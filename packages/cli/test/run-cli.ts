import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What one CLI run printed, and its exit status. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

const cliPath = new URL('../src/cli.ts', import.meta.url).pathname;
const root = new URL('../../../', import.meta.url).pathname;

/**
 * Runs the CLI as a user would (a new Node process over the sources, from the repository root),
 * its stderr a file as in `lowrank … 2> log`: a pipe from Node would be a socket, where the
 * WebGPU backend cannot keep Dawn's adapter warnings out of stderr (gpu-node.ts).
 */
export async function lowrank(...args: string[]): Promise<CliRun> {
  const dir = mkdtempSync(join(tmpdir(), 'lowrank-cli-stderr-'));
  const file = join(dir, 'stderr');
  const fd = openSync(file, 'w');
  try {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', cliPath, ...args], {
      cwd: root,
      env: { ...process.env, LOWRANK_DEBUG: '' },
      stdio: ['ignore', 'pipe', fd],
    });
    let stdout = '';
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
    });
    const code = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
    });
    return { code, stdout, stderr: readFileSync(file, 'utf8') };
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}
