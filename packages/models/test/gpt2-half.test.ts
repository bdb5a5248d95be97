import '@lowrank/autograd';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { noGrad } from '@lowrank/autograd';
import { adapterParameters, loadAdapterFromBytes } from '@lowrank/lora';
import {
  Conv1D,
  modelFootprint,
  parseSafetensors,
  QuantizedEmbedding,
  QuantizedLinear,
  type SafetensorsTensor,
} from '@lowrank/nn';
import * as lr from '@lowrank/tensor';
import { afterAll, describe, expect, it } from 'vitest';
import { generate } from '../src/generate.js';
import { GPT2LMHeadModel } from '../src/gpt2.js';
import { fromPretrained } from '../src/node.js';

/**
 * GPT-2 loaded with its base in 16 bits (issue #17): `fromPretrained(dir, { dtype })` on the
 * peft-gpt2-tiny fixture (f32, tied wte, Conv1D weights stored [in, out]) against the float32
 * load of the same file, and against an F16 copy of the file written here.
 */
const dir = new URL('./fixtures/peft-gpt2-tiny/', import.meta.url).pathname;
const base = `${dir}base`;
const file = parseSafetensors(new Uint8Array(readFileSync(join(base, 'model.safetensors')))).tensors;
const tmp = mkdtempSync(join(tmpdir(), 'gpt2-f16-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function values(t: lr.Tensor): Promise<Float32Array> {
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
}
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
async function logitsAndLoss(model: GPT2LMHeadModel, ids: lr.Tensor): Promise<[Float32Array, number]> {
  model.eval();
  const out = noGrad(() => {
    const o = model.forward(ids, { labels: ids });
    return { logits: o.logits, loss: o.loss as lr.Tensor };
  });
  const loss = (await out.loss.item()) as number;
  out.loss.dispose();
  return [await values(out.logits), loss];
}

/** The fixture's file rewritten with every float tensor as F16 (bits by the host's rounding). */
function f16File(tensors: Record<string, SafetensorsTensor>): Uint8Array {
  const header: Record<string, unknown> = {};
  const parts: Uint16Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const bits = Uint16Array.from(t.data as Float32Array, (v) => lr.f16Bits(v));
    header[name] = { dtype: 'F16', shape: t.shape, data_offsets: [offset, offset + bits.byteLength] };
    offset += bits.byteLength;
    parts.push(bits);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  let at = 8 + json.length;
  for (const p of parts) {
    out.set(new Uint8Array(p.buffer), at);
    at += p.byteLength;
  }
  return out;
}

const conv1dNames = (m: GPT2LMHeadModel) =>
  m.namedModules().filter(([, x]) => x instanceof QuantizedLinear) as [string, QuantizedLinear][];

const webgpuUnavailable = await lr
  .init({ backend: 'webgpu' })
  .then(() => null)
  .catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
  .finally(() => lr.setDefaultDevice('cpu'));

describe('GPT-2 with a 16-bit base', () => {
  it('f32 file as f16: Conv1D weights rounded in their [in, out] layout, wte/wpe 16-bit, base bytes halved; logits, loss, LoRA gradients and greedy tokens', async () => {
    const h = await fromPretrained(base, { dtype: 'f16' });
    const f = await fromPretrained(base);
    expect(h).toBeInstanceOf(GPT2LMHeadModel);
    expect(h.nameOrPath).toBe(base);
    const layers = conv1dNames(h);
    expect(layers.map(([n]) => n)).toEqual(
      [0, 1].flatMap((i) =>
        ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'].map((s) => `transformer.h.${i}.${s}`),
      ),
    );
    expect(h.namedModules().some(([, m]) => m instanceof Conv1D)).toBe(false);
    // each weight is the f16 value nearest the file's, read back in the Conv1D layout [in, out]
    for (const [name, layer] of layers) {
      expect(layer.fanInFanOut).toBe(true);
      expect(layer.format).toBe('f16');
      const x = file[`${name}.weight`];
      expect([layer.inFeatures, layer.outFeatures]).toEqual(x.shape);
      const w = await values(layer.dequantizedWeight());
      expect(Array.from(w)).toEqual(Array.from(x.data as Float32Array, (v) => lr.f16Value(lr.f16Bits(v))));
      // the bias stays the file's float32 values
      expect(Array.from((await (layer.bias as lr.Tensor).data()) as Float32Array)).toEqual(
        Array.from(file[`${name}.bias`].data as Float32Array),
      );
    }
    for (const t of ['wte', 'wpe'])
      expect(h.getSubmodule(`transformer.${t}`)).toBeInstanceOf(QuantizedEmbedding);
    expect(() => h.lmHeadWeight).toThrow(
      /tied head is a f16 QuantizedWeight \[256, 32\].*transformer\.wte\.weight/,
    );
    // the whole base (8 Conv1D, wte 256·32, wpe 64·32) at half its float32 bytes; LayerNorms stay float32
    const fp = modelFootprint(h);
    const f32 = 4 * (256 * 32 + 64 * 32 + layers.reduce((n, [, l]) => n + l.inFeatures * l.outFeatures, 0));
    expect(fp.quantized.f32Bytes).toBe(f32);
    expect(fp.quantized.bytes).toBe(f32 / 2);

    const ids = lr.tensor([[3, 17, 200, 45, 9, 120, 7, 33]], { dtype: 'int32' });
    const [lh, lossH] = await logitsAndLoss(h, ids);
    const [lf, lossF] = await logitsAndLoss(f, ids);
    const scale = maxAbs(lf);
    // every weight moves by at most 2^−11 of itself: 4 matmuls a layer, 2 layers, the two
    // embeddings and the head, bounded as in half-loading.test.ts by 11·2^−11 of the scale
    expect(maxDiff(lh, lf)).toBeLessThan(11 * 2 ** -11 * scale);
    expect(maxDiff(lh, lf)).toBeGreaterThan(0);
    expect(Math.abs(lossH - lossF)).toBeLessThan(11 * 2 ** -11 * scale);
    // exactly the float32 GPT-2 whose weights are the f16 values
    for (const [name, layer] of layers) {
      const w = layer.dequantizedWeight();
      noGrad(() => f.getParameter(`${name}.weight`).copy_(w));
      w.dispose();
    }
    for (const t of ['wte', 'wpe']) {
      const w = lr.dequantize((h.getSubmodule(`transformer.${t}`) as QuantizedEmbedding).weight);
      noGrad(() => f.getParameter(`transformer.${t}.weight`).copy_(w));
      w.dispose();
    }
    const [lr16, lossR] = await logitsAndLoss(f, ids);
    expect(maxDiff(lh, lr16)).toBeLessThan(1e-5 * scale);
    expect(Math.abs(lossH - lossR)).toBeLessThan(1e-5);
    // greedy tokens with the KV cache
    const [gh, gf] = [
      await generate(h, [3, 17, 200], { maxNewTokens: 12, greedy: true }),
      await generate(f, [3, 17, 200], { maxNewTokens: 12, greedy: true }),
    ];
    expect(gh.tokens).toEqual(gf.tokens);
    // the fixture's PEFT adapter (c_attn, fan_in_fan_out) on the 16-bit base: every gradient as on the rounded f32 model
    const config = readFileSync(`${dir}adapter/adapter_config.json`, 'utf8');
    const bytes = new Uint8Array(readFileSync(`${dir}adapter/adapter_model.safetensors`));
    const grads: Map<string, Float32Array>[] = [];
    for (const m of [h, f]) {
      const lora = loadAdapterFromBytes(m, config, bytes, { onWarning: () => {} });
      m.train();
      const loss = m.forward(ids, { labels: ids }).loss as lr.Tensor;
      loss.backward();
      const g = new Map<string, Float32Array>();
      for (const [k, p] of adapterParameters(lora))
        g.set(k, (await (p.grad as lr.Tensor).data()) as Float32Array);
      grads.push(g);
      loss.dispose();
    }
    expect(grads[0].size).toBeGreaterThan(0);
    for (const [k, g] of grads[0]) {
      const w = grads[1].get(k) as Float32Array;
      expect(maxAbs(w), k).toBeGreaterThan(0);
      expect(maxDiff(g, w) / maxAbs(w), k).toBeLessThan(1e-4);
    }
    ids.dispose();
    h.dispose();
    f.dispose();
  });

  it('an F16 file as f16 is kept bit for bit (transposed words); as bf16 rounded to nearest even', async () => {
    writeFileSync(join(tmp, 'config.json'), readFileSync(join(base, 'config.json')));
    writeFileSync(join(tmp, 'model.safetensors'), f16File(file));
    const h = await fromPretrained(tmp, { dtype: 'f16' });
    const b = await fromPretrained(base, { dtype: 'bf16' });
    for (const [name, layer] of conv1dNames(h)) {
      const x = file[`${name}.weight`].data as Float32Array;
      const w = await values(layer.dequantizedWeight());
      expect(Array.from(w)).toEqual(Array.from(x, (v) => lr.f16Value(lr.f16Bits(v))));
      const q = b.getSubmodule(name) as QuantizedLinear;
      expect(q.format).toBe('bf16');
      const wb = await values(q.dequantizedWeight());
      expect(Array.from(wb)).toEqual(Array.from(x, (v) => lr.bf16Value(lr.bf16Bits(v))));
    }
    const wte = await values(lr.dequantize((h.getSubmodule('transformer.wte') as QuantizedEmbedding).weight));
    expect(Array.from(wte)).toEqual(
      Array.from(file['transformer.wte.weight'].data as Float32Array, (v) => lr.f16Value(lr.f16Bits(v))),
    );
    h.dispose();
    b.dispose();
  });

  it.skipIf(webgpuUnavailable !== null)(
    `on WebGPU: logits and loss as on the CPU${webgpuUnavailable ? ` (skipped: ${webgpuUnavailable})` : ''}`,
    async () => {
      const runs: [Float32Array, number][] = [];
      for (const device of ['cpu', 'webgpu'] as const) {
        const m = await fromPretrained(base, { dtype: 'f16', device });
        expect(m.device).toBe(device);
        const ids = lr.tensor([[3, 17, 200, 45, 9, 120, 7, 33]], { dtype: 'int32', device });
        runs.push(await logitsAndLoss(m, ids));
        ids.dispose();
        m.dispose();
      }
      const [[lc, lossC], [lg, lossG]] = runs;
      expect(maxDiff(lg, lc)).toBeLessThan(1e-4 * maxAbs(lc));
      expect(Math.abs(lossG - lossC)).toBeLessThan(1e-4);
    },
  );
});
