#!/usr/bin/env node
// The `lowrank` command. Runs the built CLI when the package is built (dist/), otherwise the
// TypeScript sources through tsx with the workspace's `source` export condition.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/cli.js', import.meta.url);
if (existsSync(fileURLToPath(dist))) {
  const { main } = await import(dist.href);
  process.exitCode = await main(process.argv.slice(2));
} else {
  const src = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
  const tsx = import.meta.resolve('tsx');
  const r = spawnSync(
    process.execPath,
    ['--conditions=source', '--import', tsx, src, ...process.argv.slice(2)],
    {
      stdio: 'inherit',
    },
  );
  process.exitCode = r.status ?? 1;
}
