import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Conv1D,
  Embedding,
  Linear,
  Module,
  ModuleList,
  parseSafetensors,
  serializeSafetensors,
} from '@lowrank/nn';
import { Generator, randint } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import {
  adapterParameters,
  applyLora,
  exportAdapter,
  fromPeftConfig,
  importAdapter,
  LoraLinear,
  loadAdapterFromBytes,
} from '../src/index.js';
import { loadAdapter, saveAdapter } from '../src/node.js';
import { maxAbsDiff, TinyNet } from './helpers.js';

const FIXTURE = join(import.meta.dirname, 'fixtures/peft-gpt2-tiny/adapter');

/** GPT-2's module tree (names as Hugging Face's), enough to receive an adapter. */
class Gpt2Skeleton extends Module {
  readonly transformer: Module;
  constructor(width = 32, layers = 2) {
    super();
    const block = () => {
      const b = new (class extends Module {})();
      const attn = new (class extends Module {})();
      attn.registerModule('c_attn', new Conv1D(3 * width, width));
      attn.registerModule('c_proj', new Conv1D(width, width));
      const mlp = new (class extends Module {})();
      mlp.registerModule('c_fc', new Conv1D(4 * width, width));
      mlp.registerModule('c_proj', new Conv1D(width, 4 * width));
      b.registerModule('attn', attn);
      b.registerModule('mlp', mlp);
      return b;
    };
    this.transformer = this.registerModule('transformer', new (class extends Module {})());
    this.transformer.registerModule('wte', new Embedding(256, width));
    this.transformer.registerModule('h', new ModuleList(Array.from({ length: layers }, block)));
    this.registerModule('lm_head', new Linear(width, 256, { bias: false }));
  }
}

const fixtureConfig = async () =>
  JSON.parse(await readFile(join(FIXTURE, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
const fixtureTensors = async () =>
  parseSafetensors(new Uint8Array(await readFile(join(FIXTURE, 'adapter_model.safetensors')))).tensors;
const KEYS = [0, 1].flatMap((i) =>
  ['A', 'B'].map((ab) => `base_model.model.transformer.h.${i}.attn.c_attn.lora_${ab}.weight`),
);

describe('the PEFT 0.21 fixture (tiny GPT-2, r=4, α=8, c_attn, fan_in_fan_out)', () => {
  it('config parses with no warnings, keys and shapes are PEFT’s', async () => {
    const warnings: string[] = [];
    const parsed = fromPeftConfig(await fixtureConfig(), { onWarning: (w) => warnings.push(w) });
    expect(warnings).toEqual([]);
    expect(parsed.config).toMatchObject({
      r: 4,
      loraAlpha: 8,
      targetModules: ['c_attn'],
      fanInFanOut: true,
      bias: 'none',
      loraDropout: 0,
      useRslora: false,
    });
    expect(parsed.metadata.peft_version).toBe('0.21.0');
    const tensors = await fixtureTensors();
    expect(Object.keys(tensors).sort()).toEqual([...KEYS].sort());
    for (const k of KEYS) expect(tensors[k].shape).toEqual(k.includes('lora_A') ? [4, 32] : [96, 4]);
  });

  it('loads into GPT-2’s module tree and exports back bit-identically', async () => {
    const model = new Gpt2Skeleton();
    const lora = await loadAdapter(model, FIXTURE);
    const layer = lora.layers.get('transformer.h.0.attn.c_attn');
    expect(layer).toBeInstanceOf(LoraLinear);
    expect((layer as LoraLinear).fanInFanOut).toBe(true);
    expect(layer!.specs.get('default')).toMatchObject({ r: 4, alpha: 8, scaling: 2 });
    expect([...lora.layers.keys()]).toEqual(['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn']);
    const original = await fixtureTensors();
    const out = await exportAdapter(lora);
    expect(Object.keys(out.tensors)).toEqual(KEYS);
    for (const k of KEYS) {
      expect(out.tensors[k].shape).toEqual(original[k].shape);
      expect(Array.from(out.tensors[k].data)).toEqual(Array.from(original[k].data));
    }
    expect(out.config).toMatchObject({
      peft_type: 'LORA',
      r: 4,
      lora_alpha: 8,
      target_modules: ['c_attn'],
      fan_in_fan_out: true,
      bias: 'none',
      use_rslora: false,
    });
  });

  it('unknown config keys load with a warning; unsupported features are refused', async () => {
    const config = { ...(await fixtureConfig()), shiny_new_option: 3 };
    const warnings: string[] = [];
    importAdapter(
      new Gpt2Skeleton(),
      { config, tensors: await fixtureTensors() },
      { onWarning: (w) => warnings.push(w) },
    );
    expect(warnings).toEqual([
      "adapter_config.json: unknown key 'shiny_new_option' ignored (written by a newer PEFT?)",
    ]);
    const dora = { ...(await fixtureConfig()), use_dora: true };
    expect(() => importAdapter(new Gpt2Skeleton(), { config: dora, tensors: {} })).toThrow(
      /'use_dora' = true is not supported/,
    );
    expect(() => fromPeftConfig({ peft_type: 'IA3', target_modules: ['x'] })).toThrow(/only 'LORA'/);
  });

  it('mismatched adapters fail clearly and leave the model untouched', async () => {
    const tensors = await fixtureTensors();
    const config = await fixtureConfig();
    const narrow = new Gpt2Skeleton(16);
    const names = narrow.namedParameters().map(([n]) => n);
    expect(() => importAdapter(narrow, { config, tensors })).toThrow(
      /base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_A\.weight: file \[4,32\], model \[4,16\]/,
    );
    expect(narrow.namedParameters().map(([n]) => n)).toEqual(names);
    const renamed = {
      ...tensors,
      'base_model.model.transformer.h.7.attn.c_attn.lora_A.weight': tensors[KEYS[0]],
    };
    expect(() => importAdapter(new Gpt2Skeleton(), { config, tensors: renamed })).toThrow(
      /unexpected key .*h\.7.*no such adapted module/,
    );
    expect(() => importAdapter(new Gpt2Skeleton(), { config, tensors: {} })).toThrow(/holds no tensors/);
    expect(() => importAdapter(new Gpt2Skeleton(1 * 32, 1), { config, tensors })).toThrow(
      /unexpected key .*h\.1/,
    );
    expect(() => importAdapter(new TinyNet(), { config, tensors })).toThrow(
      /Target modules \[c_attn\] not found|fusedSlices|does not fit/,
    );
    const llama = { ...config, target_modules: ['q_proj', 'v_proj'] };
    expect(() => importAdapter(new Gpt2Skeleton(), { config: llama, tensors })).toThrow(
      /Target modules \[q_proj, v_proj\] not found in the base model .*c_attn/,
    );
    expect(() => loadAdapterFromBytes(new Gpt2Skeleton(), '{oops', serializeSafetensors({}))).toThrow(
      /not valid JSON/,
    );
    await expect(loadAdapter(new Gpt2Skeleton(), '/nonexistent/dir')).rejects.toThrow(/is not a directory/);
  });
});

describe('our adapters round-trip through PEFT’s format', () => {
  it('Linear, Conv1D (fused slices), Embedding, rankPattern, bias, modulesToSave; subfolder per named adapter', async () => {
    const config = {
      r: 2,
      loraAlpha: 6,
      targetModules: ['emb', 'fc', 'c_attn', 'c_proj'],
      rankPattern: { c_proj: 3 },
      fusedSlices: { c_attn: [true, false, true] },
      bias: 'lora_only' as const,
      modulesToSave: ['lm_head'],
      initLoraWeights: false as const,
      seed: 5,
    };
    const net = new TinyNet();
    net.eval();
    const lora = applyLora(net, config, 'mine');
    const ids = randint(0, 11, [2, 3], { generator: new Generator(2) });
    const y = net.forward(ids);
    const dir = await mkdtemp(join(tmpdir(), 'lora-'));
    const saved = await saveAdapter(lora, dir, 'mine');
    expect(saved.dir).toBe(join(dir, 'mine'));
    expect((await readdir(saved.dir)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const { tensors } = parseSafetensors(
      new Uint8Array(await readFile(join(saved.dir, 'adapter_model.safetensors'))),
    );
    const shapes = Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, t.shape]));
    expect(shapes).toEqual({
      'base_model.model.emb.lora_embedding_A': [2, 11],
      'base_model.model.emb.lora_embedding_B': [6, 2],
      'base_model.model.fc.lora_A.weight': [2, 6],
      'base_model.model.fc.lora_B.weight': [5, 2],
      'base_model.model.c_attn.lora_A.weight': [4, 5], // 2 enabled slices × r = 2
      'base_model.model.c_attn.lora_B.weight': [9, 4], // PEFT's plain form: all 3 slices
      'base_model.model.c_proj.lora_A.weight': [3, 9],
      'base_model.model.c_proj.lora_B.weight': [6, 3],
      'base_model.model.fc.base_layer.bias': [5],
      'base_model.model.c_attn.base_layer.bias': [9],
      'base_model.model.c_proj.base_layer.bias': [6],
      'base_model.model.lm_head.weight': [11, 6],
    });
    const cfg = JSON.parse(await readFile(join(saved.dir, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      r: 2,
      lora_alpha: 6,
      rank_pattern: { c_proj: 3, c_attn: 4 },
      alpha_pattern: { c_attn: 12 },
      fan_in_fan_out: true,
    });
    const fresh = new TinyNet();
    fresh.eval();
    await loadAdapter(fresh, saved.dir, { adapterName: 'mine' });
    expect(await maxAbsDiff(fresh.forward(ids), y)).toBeLessThan(1e-5);
    // and the reloaded adapter saves to identical tensors
    const again = await exportAdapter((await import('../src/index.js')).getLoraModel(fresh)!, 'mine');
    for (const [k, t] of Object.entries(tensors))
      expect(Array.from(again.tensors[k].data)).toEqual(Array.from(t.data));
  });

  it('a second adapter loads next to the first', async () => {
    const net = new TinyNet();
    const lora = applyLora(net, { targetModules: ['fc'], initLoraWeights: false, seed: 1 });
    const dir = await mkdtemp(join(tmpdir(), 'lora-'));
    await saveAdapter(lora, dir);
    await writeFile(join(dir, 'note.txt'), 'ignored');
    const back = await loadAdapter(net, dir, { adapterName: 'copy' });
    expect(back).toBe(lora);
    expect(lora.adapters).toEqual(['default', 'copy']);
    const [a0, b0] = lora.layers.get('fc')!.factorParams('default');
    const [a1, b1] = lora.layers.get('fc')!.factorParams('copy');
    expect(await maxAbsDiff(a0, a1)).toBe(0);
    expect(await maxAbsDiff(b0, b1)).toBe(0);
  });
});

describe('browser safety', () => {
  it('no module reachable from the main entry imports node:*', async () => {
    const src = join(import.meta.dirname, '../src');
    const files = (await readdir(src, { recursive: true })).filter(
      (f) => f.endsWith('.ts') && f !== 'node.ts',
    );
    for (const f of files)
      expect([f, /from 'node:/.test(await readFile(join(src, f), 'utf8'))]).toEqual([f, false]);
    expect(await readFile(join(src, 'index.ts'), 'utf8')).not.toMatch(/node\.js/);
  });
});

describe('adapterParameters', () => {
  it('maps PEFT keys to the live parameters (for gradient comparisons)', async () => {
    const lora = await loadAdapter(new Gpt2Skeleton(), FIXTURE);
    const params = adapterParameters(lora);
    expect([...params.keys()]).toEqual(KEYS);
    expect(params.get(KEYS[0])).toBe(
      lora.layers.get('transformer.h.0.attn.c_attn')!.factorParams('default')[0],
    );
    const fused = applyLora(new TinyNet(), {
      targetModules: ['c_attn'],
      fusedSlices: { c_attn: [true, false, true] },
    });
    expect(() => adapterParameters(fused)).toThrow(/adapts fused slices/);
  });
});
