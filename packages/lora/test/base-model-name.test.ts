import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyLora, exportAdapter, importAdapter, modelNameOrPath, serializeAdapter } from '../src/index.js';
import { loadAdapter, saveAdapter } from '../src/node.js';
import { TinyNet } from './helpers.js';

/** A model that knows where it came from, as `fromPretrained` leaves lowrank's models. */
class Named extends TinyNet {
  nameOrPath: string | null;
  constructor(name: string | null) {
    super();
    this.nameOrPath = name;
  }
}

const tmp = mkdtempSync(join(tmpdir(), 'lowrank-base-name-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function adapterOf(name: string | null) {
  const lora = applyLora(new Named(name), { r: 2, targetModules: ['fc'] });
  return exportAdapter(lora);
}

describe('base_model_name_or_path', () => {
  it('is written from the model’s nameOrPath (null when it has none)', async () => {
    expect((await adapterOf('org/tiny')).config.base_model_name_or_path).toBe('org/tiny');
    expect((await adapterOf(null)).config.base_model_name_or_path).toBe(null);
    expect(modelNameOrPath(new TinyNet())).toBe(null);
    const lora = applyLora(new Named('models/tiny'), { r: 2, targetModules: ['fc'] });
    const { configJson } = await serializeAdapter(lora);
    expect(JSON.parse(configJson).base_model_name_or_path).toBe('models/tiny');
    const { dir } = await saveAdapter(lora, join(tmp, 'a'));
    expect(JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(
      'models/tiny',
    );
  });

  it('is checked on load: a warning naming both when they differ, none when they agree', async () => {
    const files = await adapterOf('org/tiny');
    const warnings: string[] = [];
    const onWarning = (w: string) => warnings.push(w);
    importAdapter(new Named('org/other'), files, { onWarning });
    expect(warnings).toEqual([
      "loadAdapter: the adapter was trained on 'org/tiny' (base_model_name_or_path) but the model was loaded from 'org/other'; it may not fit this base",
    ]);
    warnings.length = 0;
    importAdapter(new Named('org/tiny'), files, { onWarning });
    importAdapter(new Named('/cache/hub/models--org--tiny/snapshots/0123abcd/'), files, { onWarning });
    importAdapter(new Named(null), files, { onWarning }); // unknown base: nothing to compare
    importAdapter(new Named('org/x'), await adapterOf(null), { onWarning }); // unknown in the file
    expect(warnings).toEqual([]);
    const lora = applyLora(new Named('runs/base/'), { r: 2, targetModules: ['fc'] });
    const { dir } = await saveAdapter(lora, join(tmp, 'b'));
    await loadAdapter(new Named('./runs/base'), dir, { onWarning });
    expect(warnings).toEqual([]);
    await loadAdapter(new Named('runs/other'), dir, { onWarning });
    expect(warnings).toEqual([
      "loadAdapter: the adapter was trained on 'runs/base/' (base_model_name_or_path) but the model was loaded from 'runs/other'; it may not fit this base",
    ]);
  });
});
