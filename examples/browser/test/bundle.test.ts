/**
 * Every package's main entry bundles for the browser (esbuild, platform=browser, the `source`
 * condition as in development) without reaching a Node builtin or the `webgpu` package; the
 * Node-only entries (`/node`) do reach them, which shows the check can fail.
 */
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { describe, expect, it } from 'vitest';

const here = fileURLToPath(new URL('..', import.meta.url));
const NODE_ONLY = new Set([...builtinModules, 'webgpu']);
const isNodeOnly = (path: string): boolean =>
  path.startsWith('node:') || NODE_ONLY.has(path) || NODE_ONLY.has(path.split('/')[0]);

/** Bundles `entry` for the browser; returns the Node-only imports it reached, with their importers. */
async function nodeOnlyImports(entry: string): Promise<string[]> {
  const found: string[] = [];
  const detect: Plugin = {
    name: 'detect-node-only',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (!isNodeOnly(args.path)) return undefined;
        found.push(`${args.path} (from ${args.importer.replace(/^.*\/work\/main\//, '')})`);
        return { path: args.path, external: true };
      });
    },
  };
  await build({
    stdin: { contents: `export * from '${entry}';`, resolveDir: here, loader: 'ts' },
    bundle: true,
    write: false,
    platform: 'browser',
    format: 'esm',
    conditions: ['source'],
    logLevel: 'silent',
    plugins: [detect],
  });
  return found;
}

describe('browser entries of the packages', () => {
  for (const entry of [
    '@lowrank/tensor',
    '@lowrank/autograd',
    '@lowrank/nn',
    '@lowrank/lora',
    '@lowrank/models',
    'lowrank',
  ]) {
    it(`${entry} reaches no Node builtin and not the webgpu package`, async () => {
      expect(await nodeOnlyImports(entry)).toEqual([]);
    });
  }

  it('the Node entries are caught (the check can fail)', async () => {
    expect((await nodeOnlyImports('@lowrank/lora/node')).join()).toMatch(/node:fs/);
    expect((await nodeOnlyImports('@lowrank/models/node')).join()).toMatch(/node:fs/);
  });

  it('without the browser condition, the tensor package reaches webgpu through #gpu-node', async () => {
    const found: string[] = [];
    await build({
      stdin: { contents: "export * from '@lowrank/tensor';", resolveDir: here, loader: 'ts' },
      bundle: true,
      write: false,
      platform: 'node',
      format: 'esm',
      conditions: ['source'],
      logLevel: 'silent',
      plugins: [
        {
          name: 'record',
          setup(b) {
            b.onResolve({ filter: /^webgpu$/ }, (args) => {
              found.push(args.path);
              return { path: args.path, external: true };
            });
          },
        },
      ],
    });
    expect(found).toEqual(['webgpu']);
  });
});
