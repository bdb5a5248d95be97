/**
 * The packages work outside this repository: `pnpm pack` of every package (its `prepack` builds
 * `dist/` with turbo, cached when nothing changed) gives tarballs that `npm install` puts into a
 * fresh project in the system's temporary directory, where the README's "LoRA in ten lines"
 * runs in Node, type-checks against the installed declarations, and bundles for the browser
 * (esbuild, platform=browser); the CLI's `lowrank` binary runs from its tarball too.
 *
 * Third-party dependencies come from the npm registry (the `webgpu` package is optional and left
 * out: the example runs on the CPU), so the test is skipped, saying why, when the registry cannot
 * be reached.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build, type Plugin } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url).pathname;
const PACKAGES = ['tensor', 'autograd', 'nn', 'lora', 'models', 'lowrank', 'cli'];
const env = { ...process.env, TURBO_TELEMETRY_DISABLED: '1', npm_config_update_notifier: 'false' };

/** Why the npm registry cannot be used here, or null when it answers. */
async function registryUnreachable(): Promise<string | null> {
  let registry: string;
  try {
    registry = (await run('npm', ['config', 'get', 'registry'], { env })).stdout.trim();
  } catch (e) {
    return `npm is not available (${(e as Error).message})`;
  }
  try {
    const r = await fetch(new URL('commander', registry.endsWith('/') ? registry : `${registry}/`), {
      method: 'HEAD',
      signal: AbortSignal.timeout(5000),
    });
    return r.ok ? null : `the npm registry ${registry} answered ${r.status}`;
  } catch (e) {
    return `the npm registry ${registry} cannot be reached (${(e as Error).message})`;
  }
}

const unreachable = await registryUnreachable();
if (unreachable) console.warn(`[packages test skipped] ${unreachable}`);

/** The README's LoRA example, as it is written there. */
function readmeExample(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = /## LoRA in ten lines\n\n```ts\n([\s\S]*?)```/.exec(readme);
  if (!block) throw new Error('README.md has no "LoRA in ten lines" ts block');
  return block[1];
}

/** What the example prints after the README's lines, to check what it did. */
const CHECKS = `
const losses = trainer.losses.map(([, loss]) => loss);
console.log(JSON.stringify({ r: JSON.parse(configJson).r, bytes: safetensors.length, losses }));
`;

describe.skipIf(unreachable !== null)('the packed packages, installed with npm outside the workspace', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowrank-packages-'));
  const project = join(dir, 'project');
  const tarballs = new Map<string, string>(); // package name -> tarball path
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  beforeAll(async () => {
    // one build first (dependencies before dependents); each pack's prepack then hits the cache
    await run(
      'pnpm',
      ['exec', 'turbo', 'run', 'build', '--filter=./packages/*', '--output-logs=errors-only'],
      {
        cwd: root,
        env,
      },
    );
    for (const p of PACKAGES) {
      const { name } = JSON.parse(readFileSync(join(root, 'packages', p, 'package.json'), 'utf8')) as {
        name: string;
      };
      await run('pnpm', ['pack', '--pack-destination', dir], { cwd: join(root, 'packages', p), env });
      tarballs.set(name, join(dir, `${name.replace('@', '').replace('/', '-')}-0.1.0.tgz`));
    }
    const dependencies = Object.fromEntries([...tarballs].map(([name, file]) => [name, `file:${file}`]));
    await run('mkdir', ['-p', project]);
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'uses-lowrank', private: true, type: 'module', dependencies }, null, 2),
    );
    await run('npm', ['install', '--omit=optional', '--no-audit', '--no-fund', '--prefer-offline'], {
      cwd: project,
      env,
    });
  }, 420_000);

  it('every tarball has its built entry points and types, and no workspace: versions', () => {
    for (const name of tarballs.keys()) {
      const pkgDir = join(project, 'node_modules', name);
      const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as Record<string, unknown>;
      expect(JSON.stringify(pkg.dependencies ?? {}), name).not.toContain('workspace:');
      // every file that exports, imports and bin name (but the repository's `source` condition)
      const targets: string[] = [];
      const collect = (v: unknown, key = ''): void => {
        if (typeof v === 'string') {
          if (key !== 'source') targets.push(v);
        } else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) collect(x, k);
      };
      collect(pkg.exports);
      collect(pkg.imports);
      collect(pkg.bin);
      if (name !== '@lowrank/cli')
        expect(
          targets.some((t) => t.endsWith('.d.ts')),
          name,
        ).toBe(true);
      for (const t of targets) expect(() => readFileSync(join(pkgDir, t)), `${name}: ${t}`).not.toThrow();
    }
    expect([...tarballs.keys()].sort()).toEqual([
      '@lowrank/autograd',
      '@lowrank/cli',
      '@lowrank/lora',
      '@lowrank/models',
      '@lowrank/nn',
      '@lowrank/tensor',
      'lowrank',
    ]);
  });

  it('npm took every lowrank package from the tarballs, none from the registry', () => {
    const lock = JSON.parse(readFileSync(join(project, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { resolved?: string; version?: string }>;
    };
    const ours = Object.entries(lock.packages).filter(([path]) =>
      /node_modules\/(@lowrank\/|lowrank$)/.test(path),
    );
    expect(ours.length).toBe(tarballs.size);
    for (const [path, entry] of ours) expect(entry.resolved ?? '', path).toMatch(/^file:/);
  });

  it("the README's LoRA example runs in Node", async () => {
    writeFileSync(join(project, 'readme-lora.mjs'), readmeExample() + CHECKS);
    const { stdout } = await run(process.execPath, ['readme-lora.mjs'], { cwd: project, env });
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^trainable params: 1,024 \|\| all params: 36,736 \|\| trainable%: /);
    const summary = JSON.parse(lines.at(-1) ?? '') as { r: number; bytes: number; losses: number[] };
    expect(summary.r).toBe(4);
    expect(summary.bytes).toBeGreaterThan(1024 * 4); // 1,024 float32 values and a header
    expect(summary.losses.length).toBe(20);
    expect(summary.losses[19]).toBeLessThan(summary.losses[0]); // the adapter learned the repeated text
  }, 120_000);

  it('the example type-checks against the installed declarations (strict, declarations included)', async () => {
    writeFileSync(join(project, 'readme-lora.ts'), readmeExample() + CHECKS);
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2023', 'DOM'],
          types: [],
          skipLibCheck: false, // the packages' own declarations must hold too (WebGPU's types come with tensor)
        },
        files: ['readme-lora.ts'],
      }),
    );
    const tsc = join(root, 'node_modules/typescript/bin/tsc');
    const r = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: project, env }).catch(
      (e: { stdout: string }) => ({ stdout: e.stdout }),
    );
    expect(r.stdout).toBe('');
    // the check can fail: a method the Tensor type does not have is an error
    writeFileSync(join(project, 'readme-lora.ts'), `${readmeExample()}\nlr.zeros([2]).noSuchMethod();\n`);
    const bad = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: project, env }).catch(
      (e: { stdout: string }) => ({ stdout: e.stdout }),
    );
    expect(bad.stdout).toMatch(/Property 'noSuchMethod' does not exist on type 'Tensor'/);
  }, 120_000);

  it('the example bundles for the browser without a Node builtin, and the bundle runs', async () => {
    const nodeOnly: string[] = [];
    const detect: Plugin = {
      name: 'node-only',
      setup(b) {
        b.onResolve({ filter: /^(node:|webgpu$|fs$|path$|os$|worker_threads$)/ }, (args) => {
          nodeOnly.push(`${args.path} (from ${args.importer})`);
          return { path: args.path, external: true };
        });
      },
    };
    writeFileSync(join(project, 'readme-lora.mjs'), readmeExample() + CHECKS);
    const out = join(project, 'bundle.mjs');
    const result = await build({
      entryPoints: [join(project, 'readme-lora.mjs')],
      absWorkingDir: project,
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      outfile: out,
      logLevel: 'silent',
      plugins: [detect],
    });
    expect(result.errors).toEqual([]);
    expect(nodeOnly).toEqual([]);
    // the browser build is plain ESM: it runs in Node as well (on the CPU, as in a page without WebGPU)
    const { stdout } = await run(process.execPath, [out], { cwd: project, env });
    expect(stdout).toMatch(/^trainable params: 1,024 \|\| all params: 36,736/);
    expect(stdout).toContain('"r":4');
  }, 120_000);

  it("the CLI's lowrank binary runs from its tarball", async () => {
    const bin = join(project, 'node_modules/.bin/lowrank');
    const version = await run(bin, ['--version'], { cwd: project, env });
    expect(version.stdout.trim()).toBe('0.1.0');
    const help = await run(bin, ['--help'], { cwd: project, env });
    for (const c of ['train', 'generate', 'merge', 'inspect']) expect(help.stdout).toContain(c);
  }, 60_000);
});
