import { noGrad } from '@lowrank/autograd';
import {
  dequantizeData,
  Generator,
  memory,
  peakMemory,
  quantizeData,
  randn,
  resetPeakMemory,
  type Tensor,
  tensor,
  tidy,
} from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import {
  Conv1D,
  dequantizeModel,
  GELU,
  Linear,
  QuantizedLinear,
  quantizeModel,
  Sequential,
} from '../src/index.js';

/**
 * QuantizedLinear against float64 loops over the host dequantization (quantizeData /
 * dequantizeData, checked against the Python reference in packages/tensor): a Linear's [out, in]
 * weight and a Conv1D's [in, out] one (transposed to [out, in] when quantized), the bias,
 * requantizing addDelta, toFloat / dequantizeModel, the state dict and the memory it frees.
 */

async function host(t: Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

/** y[i, o] = Σ_k x[i, k]·W[o, k] + b[o] in float64, W [out, in] row-major. */
function linearRef(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array | null,
  m: number,
  inF: number,
  outF: number,
) {
  const y = new Float64Array(m * outF);
  for (let i = 0; i < m; i++)
    for (let o = 0; o < outF; o++) {
      let acc = b ? b[o] : 0;
      for (let k = 0; k < inF; k++) acc += x[i * inF + k] * w[o * inF + k];
      y[i * outF + o] = acc;
    }
  return y;
}

function maxErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < b.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]));
  return e;
}

describe('QuantizedLinear (CPU)', () => {
  it('Linear and Conv1D: forward equals x·dequant(W)ᵀ + b from the host quantization', async () => {
    const g = new Generator(3);
    for (const conv of [false, true]) {
      const [inF, outF] = [70, 9];
      const layer = conv ? new Conv1D(outF, inF, { generator: g }) : new Linear(inF, outF, { generator: g });
      noGrad(() => layer.bias?.copy_(randn([outF], { generator: g })));
      // the [out, in] matrix whatever the layout, quantized on the host
      const wOutIn = await host(conv ? layer.weight.T.contiguous() : layer.weight);
      const bias = await host(layer.bias!);
      const want = dequantizeData(quantizeData(wOutIn, outF, inF, { bits: 'nf4', blockSize: 32 }));
      const q = await QuantizedLinear.fromLayer(layer, { bits: 'nf4', blockSize: 32 });
      expect(q.fanInFanOut).toBe(conv);
      expect([q.inFeatures, q.outFeatures]).toEqual([inF, outF]);
      expect(layer.weight.isDisposed).toBe(true); // the float32 weight is freed
      expect(q.bias).toBe(layer.bias); // the bias is taken over
      const xv = await host(randn([4, inF], { generator: g }));
      const y = q.forward(tensor(xv, { shape: [4, inF] }));
      expect(maxErr(await host(y), linearRef(xv, want, bias, 4, inF, outF))).toBeLessThan(1e-5);
      // dequantizedWeight is in the original layout
      const dw = await host(q.dequantizedWeight());
      const back = conv
        ? Float32Array.from({ length: inF * outF }, (_, i) => want[(i % outF) * inF + Math.floor(i / outF)])
        : want;
      expect(Array.from(dw)).toEqual(Array.from(back));
      expect(() => q.forward(randn([2, 5]))).toThrow(
        /QuantizedLinear: input's last dim must be in_features=70, got input \[2,5\]/,
      );
      q.dispose();
    }
  });

  it('addDelta requantizes W + ΔW in the layer’s layout; toFloat gives the float layer back', async () => {
    const g = new Generator(4);
    const conv = new Conv1D(6, 10, { generator: g });
    const q = await QuantizedLinear.fromLayer(conv, { bits: 'int8', blockSize: 'channel' });
    const w0 = await host(q.dequantizedWeight()); // [in, out]
    const delta = randn([10, 6], { generator: g }).mul(0.01);
    const dv = await host(delta);
    q.addDelta(delta);
    const sum = Float32Array.from(w0, (v, i) => v + dv[i]);
    // the host reference works on [out, in]: transpose, quantize per output row, transpose back
    const outIn = Float32Array.from({ length: 60 }, (_, i) => sum[(i % 10) * 6 + Math.floor(i / 10)]);
    const deq = dequantizeData(quantizeData(outIn, 6, 10, { bits: 'int8', blockSize: 'channel' }));
    const want = Float32Array.from({ length: 60 }, (_, i) => deq[(i % 6) * 10 + Math.floor(i / 6)]);
    expect(Array.from(await host(q.dequantizedWeight()))).toEqual(Array.from(want));
    expect(() => q.addDelta(randn([6, 10]))).toThrow(/delta must be \[10,6\], got \[6,10\]/);
    const back = q.toFloat();
    expect(back).toBeInstanceOf(Conv1D);
    expect(Array.from(await host((back as Conv1D).weight))).toEqual(Array.from(want));
    back.dispose();
  });

  it('quantizeModel / dequantizeModel: the state dict, the parameters and the memory', async () => {
    const before = memory().numBytes;
    const model = new Sequential(
      new Linear(64, 128),
      new GELU(),
      new Linear(128, 64),
      new GELU(),
      new Linear(64, 4),
    );
    const floatBytes = memory().numBytes - before;
    const report = await quantizeModel(model, { bits: 'nf4', skip: ['4'] });
    expect(report.quantized).toEqual(['0', '2']);
    // [128, 64] and [64, 128]: 4 bits a weight (8192 words) + one float32 scale per 64 weights
    expect(report.bytes).toBe((2 * (128 * 64)) / 2 + 2 * 128 * 4);
    expect(report.bytes / report.f32Bytes).toBeLessThanOrEqual(0.16);
    // the float32 weights of the quantized layers are gone from memory()
    const weights = (64 * 128 + 128 * 64) * 4;
    expect(memory().numBytes - before).toBe(floatBytes - weights + report.bytes);
    // codes are non-persistent buffers: the state dict holds the biases and the skipped layer
    expect(Object.keys(model.stateDict()).sort()).toEqual(['0.bias', '2.bias', '4.bias', '4.weight']);
    expect(model.parameters().length).toBe(4);
    expect(memory().quantized.nf4).toEqual({ count: 2, bytes: report.bytes, f32Bytes: report.f32Bytes });
    dequantizeModel(model);
    expect(memory().quantized.nf4).toBeUndefined();
    expect(model.getSubmodule('0')).toBeInstanceOf(Linear);
    expect(model.modules().some((m) => m instanceof QuantizedLinear)).toBe(false);
    model.dispose();
    expect(memory().numBytes).toBe(before);
  });

  it("quantizeModel frees a Conv1D's float32 weight, and a backward's peak falls by what the base saves", async () => {
    // GPT-2's layout: Conv1D weights [in, out], transposed to [out, in] before quantizing. The
    // transposed view once outlived fromLayer and kept each float32 weight alive beside its codes.
    const build = () => {
      const m = new Sequential(new Conv1D(256, 64), new GELU(), new Conv1D(64, 256));
      for (const p of m.parameters()) p.requiresGrad_(false); // a frozen base, as under LoRA
      return m;
    };
    const before = memory().numBytes;
    const x = randn([4, 64], { generator: new Generator(3) }).requiresGrad_(true);
    const backwardPeak = (model: Sequential): number => {
      resetPeakMemory();
      tidy(() => (model.forward(x) as Tensor).square().sum().backward());
      x.grad?.dispose();
      x.grad = null;
      return peakMemory();
    };
    const withX = memory().numBytes;
    const f32 = build();
    const floatBytes = memory().numBytes - withX;
    const f32Peak = backwardPeak(f32);
    f32.dispose();
    expect(memory().numBytes).toBe(withX);

    const model = build();
    const report = await quantizeModel(model, { bits: 'nf4' });
    expect(report.quantized).toEqual(['0', '2']);
    const weights = 2 * 64 * 256 * 4;
    expect(report.f32Bytes).toBe(weights);
    expect(memory().numBytes - withX).toBe(floatBytes - weights + report.bytes);
    // 128 KiB of float32 weights became 18 KiB of codes and scales; the activations are a few KiB
    const saved = weights - report.bytes;
    expect(backwardPeak(model)).toBeLessThanOrEqual(f32Peak - 0.9 * saved);
    model.dispose();
    x.dispose();
    expect(memory().numBytes).toBe(before);
  });

  it('refuses a tied weight (freeing it would break its other user) unless skipped', async () => {
    const model = new Sequential(new Linear(8, 8), new Linear(8, 8), new Linear(8, 8));
    (model.getSubmodule('2') as Linear).registerParameter(
      'weight',
      (model.getSubmodule('1') as Linear).weight,
    );
    await expect(quantizeModel(model, { bits: 'nf4' })).rejects.toThrow(
      /quantizeModel: '1' shares its weight with '2' \(tied weights\): add '1' to skip/,
    );
    // nothing changed: the refusal comes before any layer (not even '0') is quantized
    expect(model.getSubmodule('0')).toBeInstanceOf(Linear);
    expect((model.getSubmodule('1') as Linear).weight.isDisposed).toBe(false);
    const report = await quantizeModel(model, { bits: 'nf4', skip: ['1', '2'] });
    expect(report.quantized).toEqual(['0']);
    expect(report.skipped).toEqual(['1', '2']);
    model.dispose();
  });

  it('refuses a bias of the wrong shape', async () => {
    const q = await QuantizedLinear.fromLayer(new Linear(8, 4), { bits: 'int8' });
    expect(() => new QuantizedLinear(q.weight, randn([5]))).toThrow(
      /QuantizedLinear: bias must be \[4\], got \[5\]/,
    );
    q.dispose();
  });
});
