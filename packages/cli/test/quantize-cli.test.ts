import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from '@lowrank/models';
import { AutoModelForCausalLM } from '@lowrank/models/node';
import { modelFootprint, safetensorsEntries } from '@lowrank/nn';
import { init } from '@lowrank/tensor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lowrank } from './run-cli.js';

/**
 * `--quantize nf4|int8` (issue 18): `inspect` reports the bytes of a quantized base by storage
 * type beside float32 (checked against sizes computed here from the file's shapes and against
 * `modelFootprint` in this process), `train --lora --quantize nf4` fine-tunes the shipped char
 * GPT-2 on E2E with the loss going down, and `generate --quantize` decodes as the NF4 model does
 * in this process.
 */
const shipped = new URL('../../../examples/checkpoints/shakespeare-char', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'lowrank-quantize-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const e2e = join(dir, 'e2e.txt');
writeFileSync(
  e2e,
  readFileSync(new URL('../../../data/e2e/valid.txt', import.meta.url), 'utf8')
    .split('\n')
    .slice(0, 300)
    .join('\n'),
);
beforeAll(async () => {
  await init({ backend: 'cpu' });
});

/**
 * The bytes of the shipped model's Conv1D weights quantized as the paper lays them out: 32/bits
 * codes a u32 word along each output row's inputs, one float32 absmax per 64 inputs; and their
 * float32 size. Its Conv1D weights are stored [in, out]; the tied head and the embeddings stay
 * float32.
 */
function expectedQuantBytes(bits: 4 | 8): { bytes: number; f32Bytes: number } {
  const { tensors } = safetensorsEntries(new Uint8Array(readFileSync(join(shipped, 'model.safetensors'))));
  let bytes = 0;
  let f32Bytes = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (!/\.(c_attn|c_proj|c_fc)\.weight$/.test(name)) continue;
    const [inF, outF] = t.shape;
    bytes += outF * Math.ceil(inF / (32 / bits)) * 4 + outF * Math.ceil(inF / 64) * 4;
    f32Bytes += inF * outF * 4;
  }
  return { bytes, f32Bytes };
}

describe('lowrank --quantize', () => {
  it('inspect --quantize nf4|int8: bytes by storage type = modelFootprint, NF4 0.1406x and int8 0.2656x float32', async () => {
    const [plain, nf4, int8, nf4Text] = await Promise.all([
      lowrank('inspect', shipped, '--json'),
      lowrank('inspect', shipped, '--json', '--quantize', 'nf4'),
      lowrank('inspect', shipped, '--json', '--quantize', 'int8'),
      lowrank('inspect', shipped, '--quantize', 'nf4'),
    ]);
    for (const r of [plain, nf4, int8, nf4Text]) expect(r.code, r.stderr).toBe(0);
    // the file: every tensor float32, 213,248 of them
    const storage = JSON.parse(plain.stdout).storage;
    expect(storage).toEqual({ byType: { F32: 213_248 * 4 }, bytes: 213_248 * 4, f32Bytes: 213_248 * 4 });
    expect(JSON.parse(plain.stdout).footprint).toBeUndefined();

    for (const [bits, run, ratio] of [
      ['nf4', nf4, (0.5 + 4 / 64) / 4],
      ['int8', int8, (1 + 4 / 64) / 4],
    ] as const) {
      const fp = JSON.parse(run.stdout).footprint;
      const want = expectedQuantBytes(bits === 'nf4' ? 4 : 8);
      expect(fp.quantized).toEqual(want);
      expect(fp.quantized.bytes / fp.quantized.f32Bytes).toBeCloseTo(ratio, 10); // 0.140625, 0.265625
      expect(fp.byType[bits]).toBe(want.bytes);
      // the same model loaded in this process
      const model = await AutoModelForCausalLM.fromPretrained(shipped, { quantize: { bits } });
      const here = modelFootprint(model);
      model.dispose();
      expect(fp).toEqual({ quantize: { bits, blockSize: 64, skip: ['lm_head'] }, ...here });
      // what stays float32: every parameter but the quantized weights (embeddings, norms, biases)
      expect(fp.byType.float32).toBe((213_248 - want.f32Bytes / 4) * 4);
    }
    // the text report prints the same numbers
    expect(nf4Text.stdout).toMatch(
      /base nf4: nf4 108\.0 KiB, float32 65\.0 KiB, bool 16\.0 KiB = 189\.0 KiB \(float32: 849\.0 KiB, 0\.223x\); quantized weights 108\.0 KiB = 0\.141x their 768\.0 KiB in float32/,
    );
    expect(nf4Text.stdout).toMatch(/storage: F32 833\.0 KiB \(float32: 833\.0 KiB, 1\.000x\)/);
    expect(expectedQuantBytes(4).bytes).toBe(108 * 1024);
  }, 120_000);

  it('train --lora --quantize nf4 on the shipped char GPT-2: the E2E loss goes down; refused without --lora', async () => {
    const out = join(dir, 'qlora');
    const t = await lowrank(
      'train',
      '--init',
      shipped,
      '--data',
      e2e,
      '--format',
      'e2e',
      '--lora',
      '--quantize',
      'nf4',
      '--out',
      out,
      '--steps',
      '16',
      '--batch-size',
      '8',
      '--block-size',
      '64',
      '--lr',
      '0.01',
      '--eval-every',
      '4',
      '--device',
      'cpu',
    );
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/base nf4: nf4 108\.0 KiB, .*0\.141x their 768\.0 KiB in float32/);
    const steps = [...t.stdout.matchAll(/step (\d+)\/16 loss ([\d.]+)(?: val ([\d.]+))?/g)];
    expect(steps).toHaveLength(16);
    const loss = steps.map((m) => Number(m[2]));
    const val = steps.filter((m) => m[3] !== undefined).map((m) => Number(m[3]));
    expect(val).toHaveLength(4); // steps 4, 8, 12, 16, on the same held-out batches
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    // measured: train 2.83 → 2.33 (mean of the first vs the last four), held-out 2.415 → 2.276
    expect(mean(loss.slice(-4))).toBeLessThan(mean(loss.slice(0, 4)) - 0.1);
    expect(val[3]).toBeLessThan(val[0] - 0.05);
    expect(JSON.parse(readFileSync(join(out, 'train_args.json'), 'utf8')).quantize).toBe('nf4');

    const [full, fresh, bad] = await Promise.all([
      lowrank('train', '--init', shipped, '--data', e2e, '--quantize', 'nf4', '--out', join(dir, 'x')),
      lowrank('train', '--lora', '--data', e2e, '--quantize', 'int8', '--out', join(dir, 'y')),
      lowrank('train', '--data', e2e, '--quantize', 'nf2', '--out', join(dir, 'z')),
    ]);
    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(/--quantize nf4 stores a frozen base, which only --lora can fine-tune/);
    expect(fresh.code).toBe(1);
    expect(fresh.stderr).toMatch(/--lora needs a base model/);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/'nf2' is invalid.*nf4, int8/);
  }, 180_000);

  it('generate --quantize nf4 --greedy = the NF4 model generating in this process', async () => {
    const g = await lowrank(
      'generate',
      '--model',
      shipped,
      '--quantize',
      'nf4',
      '--prompt',
      'ROMEO:',
      '--max-tokens',
      '24',
      '--greedy',
      '--device',
      'cpu',
    );
    expect(g.code, g.stderr).toBe(0);
    const model = await AutoModelForCausalLM.fromPretrained(shipped, { quantize: { bits: 'nf4' } });
    const vocab = JSON.parse(readFileSync(join(shipped, 'tokenizer.json'), 'utf8')).chars as string[];
    const prompt = [...'ROMEO:'].map((c) => vocab.indexOf(c));
    const r = await generate(model, prompt, { maxNewTokens: 24, greedy: true });
    model.dispose();
    const text = `ROMEO:${r.tokens.map((i) => vocab[i]).join('')}`;
    expect(r.tokens).toHaveLength(24);
    expect(g.stdout).toBe(`${text}\n[24 tokens, stopped by maxNewTokens]\n`);
  }, 120_000);
});
