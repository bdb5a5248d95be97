import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/** Runs every ```ts block of the README (each throws when its claim does not hold). */
const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..');
const readme = readFileSync(join(pkg, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
const resolve: Record<string, string> = {
  "'@lowrank/nn/node'": `'${join(pkg, 'src/node/index.ts')}'`,
  "'@lowrank/nn'": `'${join(pkg, 'src/index.ts')}'`,
  "'@lowrank/tensor'": `'${join(pkg, '../tensor/src/index.ts')}'`,
};

describe('README examples', () => {
  it('has examples', () => expect(blocks.length).toBeGreaterThanOrEqual(5));
  const dir = mkdtempSync(join(tmpdir(), 'nn-readme-'));
  blocks.forEach((code, i) => {
    const title =
      code
        .split('\n')
        .find((l) => l.trim() && !l.startsWith('import'))
        ?.trim() ?? '';
    it(`example ${i + 1}: ${title.slice(0, 60)}`, async () => {
      let src = code;
      for (const [from, to] of Object.entries(resolve)) src = src.split(from).join(to);
      const file = join(dir, `example-${i}.ts`);
      writeFileSync(file, `${src}\nexport {};\n`);
      await import(/* @vite-ignore */ file);
    });
  });
});
