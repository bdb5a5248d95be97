import '@lowrank/autograd';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAdapterFromBytes } from '@lowrank/lora';
import { modelFootprint, QuantizedLinear, quantizeModel } from '@lowrank/nn';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import type { LlamaForCausalLM } from '../src/llama.js';
import { AutoModelForCausalLM, fromPretrained, savePretrained } from '../src/node.js';
import { logitsOf } from './model-values.js';

/**
 * fromPretrained(..., { quantize }) against loading in float32 and quantizing by hand (the same
 * codes, so the same logits bit for bit), on the tiny GPT-2 and Llama fixtures; the memory of the
 * quantized base; and a PEFT adapter file loaded on top of it.
 */
const fixtures = new URL('./fixtures/', import.meta.url).pathname;

describe('fromPretrained with quantize', () => {
  it('GPT-2: every Conv1D quantized, logits equal a hand-quantized float load, NF4 ≤ 0.16× of float32', async () => {
    const dir = `${fixtures}peft-gpt2-tiny/base`;
    const q = await fromPretrained(dir, { quantize: { bits: 'nf4', doubleQuant: true } });
    const f = await fromPretrained(dir);
    const report = await quantizeModel(f, { bits: 'nf4', doubleQuant: true, skip: ['lm_head'] });
    expect(report.quantized.length).toBe(8); // c_attn, c_proj, c_fc, mlp.c_proj per block
    const quantized = q
      .namedModules()
      .filter(([, m]) => m instanceof QuantizedLinear)
      .map(([n]) => n);
    expect(quantized).toEqual(report.quantized);
    const ids = lr.tensor([[1, 5, 9, 200, 17]], { dtype: 'int32' });
    const [lq, lf] = [await logitsOf(q, ids), await logitsOf(f, ids)];
    expect(Array.from(lq)).toEqual(Array.from(lf));
    const fp = modelFootprint(q);
    expect(fp.quantized.bytes / fp.quantized.f32Bytes).toBeLessThanOrEqual(0.16);
    expect(fp.byType.nf4).toBe(fp.quantized.bytes);
    // the PEFT adapter of the fixture loads on the quantized base and changes its output
    const adapter = `${fixtures}peft-gpt2-tiny/adapter/`;
    loadAdapterFromBytes(
      q,
      readFileSync(`${adapter}adapter_config.json`, 'utf8'),
      new Uint8Array(readFileSync(`${adapter}adapter_model.safetensors`)),
    );
    const la = await logitsOf(q, ids);
    expect(la.some((v, i) => Math.abs(v - lq[i]) > 1e-4)).toBe(true);
    await expect(savePretrained(q, join(tmpdir(), 'lowrank-never-written'))).rejects.toThrow(
      /savePretrained: 'transformer.h.0.attn.c_attn.base_layer' is quantized \(nf4\); a checkpoint holds float weights/,
    );
    ids.dispose();
    q.dispose();
    f.dispose();
  });

  it('Llama (Auto): int8 per channel, the same logits as quantizing by hand, lm_head left in float32', async () => {
    const dir = `${fixtures}peft-llama-tiny/base`;
    const q = (await AutoModelForCausalLM.fromPretrained(dir, {
      quantize: { bits: 'int8', blockSize: 'channel' },
    })) as LlamaForCausalLM;
    const f = (await AutoModelForCausalLM.fromPretrained(dir)) as LlamaForCausalLM;
    const report = await quantizeModel(f, { bits: 'int8', blockSize: 'channel', skip: ['lm_head'] });
    expect(report.quantized.length).toBeGreaterThan(0);
    expect(q.namedModules().some(([n, m]) => n === 'lm_head' && m instanceof QuantizedLinear)).toBe(false);
    const ids = lr.tensor([[3, 1, 4, 1, 5]], { dtype: 'int32' });
    expect(Array.from(await logitsOf(q, ids))).toEqual(Array.from(await logitsOf(f, ids)));
    const fp = modelFootprint(q);
    expect(fp.quantized.bytes / fp.quantized.f32Bytes).toBeLessThanOrEqual(0.27);
    ids.dispose();
    q.dispose();
    f.dispose();
  });
});
