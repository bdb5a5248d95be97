import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';

// The API reference's front page (docs/api-index.md, typedoc.json's readme) says what is where:
// a row per entry point, and every export it names must exist in the module of its row.
const root = new URL('../../', import.meta.url).pathname;

it('the API front page has a row per entry point, naming only real exports', async () => {
  const config = JSON.parse(readFileSync(join(root, 'typedoc.json'), 'utf8')) as {
    readme: string;
    entryPoints: string[];
  };
  expect(config.readme).toBe('docs/api-index.md');
  const page = readFileSync(join(root, config.readme), 'utf8');
  const rows = new Map<string, string>();
  for (const line of page.split('\n')) {
    const m = /^\| `([^`]+)`\s*\|(.*)\|$/.exec(line);
    if (m) rows.set(m[1], m[2]);
  }
  // entry point file by module name (examples/ does not depend on every package: import the file)
  const files = new Map(
    config.entryPoints.map((p) => {
      const pkg = JSON.parse(readFileSync(join(root, p.split('/src/')[0], 'package.json'), 'utf8'))
        .name as string;
      // src/index.ts is the package itself; src/node.ts (or src/node/index.ts) is `/node`, src/hub.ts `/hub`
      const sub = /\/src\/([a-z-]+)(\/index)?\.ts$/.exec(p)?.[1];
      return [sub && sub !== 'index' ? `${pkg}/${sub}` : pkg, join(root, p)] as const;
    }),
  );
  const modules = [...files.keys()];
  expect([...rows.keys()].sort()).toEqual([...modules].sort());
  let checked = 0;
  for (const [name, text] of rows) {
    const mod = (await import(files.get(name)!)) as Record<string, unknown>;
    for (const [, id] of text.matchAll(/`([A-Za-z_][A-Za-z0-9_]*)`/g)) {
      expect(mod[id], `${id} in ${name}`).toBeDefined();
      checked++;
    }
  }
  expect(checked).toBeGreaterThan(30);
});
