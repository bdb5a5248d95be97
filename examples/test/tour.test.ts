import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, it } from 'vitest';

// Every ```ts block of docs/tour/*.md is executed here, so the tour cannot rot. A block fenced
// as ```ts no-run is shown but not executed (browser-only code, say).
const here = dirname(fileURLToPath(import.meta.url));
const tourDir = join(here, '../../docs/tour');
const tmpDir = join(here, '../.tour-tmp');
mkdirSync(tmpDir, { recursive: true });
afterAll(() => rmSync(tmpDir, { recursive: true, force: true }));

for (const file of readdirSync(tourDir)
  .filter((f) => f.endsWith('.md'))
  .sort()) {
  const text = readFileSync(join(tourDir, file), 'utf8');
  const blocks = [...text.matchAll(/^```ts\n([\s\S]*?)^```/gm)].map((m) => m[1]);
  describe(`docs/tour/${file}`, () => {
    blocks.forEach((code, i) => {
      it(`snippet ${i + 1} runs`, async () => {
        const path = join(tmpDir, `${file.replace(/\W/g, '_')}_${i}.ts`);
        writeFileSync(path, `${code}\nexport {};\n`);
        await import(/* @vite-ignore */ path);
      });
    });
  });
}
