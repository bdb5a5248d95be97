import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * Runs the main demo as `pnpm demo --quick` does (a new Node process, CPU, shortened) and checks
 * the numbers of its summary against what they must be for this model and LoRA config.
 */
const root = new URL('../../', import.meta.url).pathname;
const out = mkdtempSync(join(tmpdir(), 'lowrank-demo-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** Runs the demo in a new Node process on the CPU, quick, writing into a fresh directory. */
async function runDemo(...extra: string[]): Promise<{ stdout: string; out: string; summary: Summary }> {
  const dir = mkdtempSync(join(out, 'run-'));
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      '--conditions=source',
      '--import',
      'tsx',
      'examples/demo.ts',
      '--quick',
      '--device',
      'cpu',
      '--out',
      dir,
      ...extra,
    ],
    { cwd: root, env: { ...process.env, LOWRANK_QUICK: '1' } },
  );
  return {
    stdout,
    out: dir,
    summary: JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as Summary,
  };
}
interface Summary {
  modelType: string;
  trainableParams: number;
  totalParams: number;
  optimizerStateBytes: number;
  fullOptimizerStateBytes: number;
  adapterBytes: number;
  fullCheckpointBytes: number;
  maxMergeDiff: number;
  testLossBefore: number;
  testLossAfter: number;
  fineTuneCpuSeconds: number;
  samples: { mr: string; before: string; after: string; reference: string }[];
  quick: boolean;
  lossSvg: string;
  evaluations: [number, number][];
  bleu: {
    mrs: number;
    before: number;
    after: number;
    detailAfter: { precisions: number[]; hypothesisLength: number };
  } | null;
}
const config = (name: string): Record<string, number> =>
  JSON.parse(readFileSync(join(root, `examples/checkpoints/${name}/config.json`), 'utf8'));

/** What every run reports, whatever the model: LoRA's savings, merge, the outputs on disk. */
function checkCommon(
  s: Summary,
  stdout: string,
  base: number,
  lora: number,
  out: string,
  loraTensors: number,
): void {
  expect(s.trainableParams).toBe(lora);
  expect(s.totalParams).toBe(base + lora);
  expect(s.optimizerStateBytes).toBe(2 * 4 * lora); // AdamW: exp_avg + exp_avg_sq, float32
  expect(s.fullOptimizerStateBytes).toBe(2 * 4 * base);
  expect(s.adapterBytes).toBeGreaterThan(4 * lora);
  // weights + safetensors header (≤160 bytes a tensor) + adapter_config.json
  expect(s.adapterBytes).toBeLessThan(4 * lora + 160 * loraTensors + 2048);
  expect(s.fullCheckpointBytes).toBeGreaterThan(4 * base);
  expect(s.maxMergeDiff).toBeLessThan(1e-4);
  expect(s.testLossAfter).toBeLessThan(s.testLossBefore);
  expect(s.fineTuneCpuSeconds).toBeGreaterThan(0);
  expect(s.samples.length).toBeGreaterThan(0);
  expect(s.quick).toBe(true);
  expect(existsSync(join(out, 'adapter', 'adapter_model.safetensors'))).toBe(true);
  const svg = readFileSync(s.lossSvg, 'utf8');
  expect(svg).toMatch(/^<svg/);
  expect(svg.match(/<path /g)).toHaveLength(2);
  // the training loss of every step, and the test loss at 0 and 5 points of the run, as dots
  expect(svg).toMatch(/stroke-dasharray/);
  expect(s.evaluations.map(([step]) => step)).toEqual([0, 2, 4, 6, 8, 10]);
  expect(svg.match(/<circle /g)).toHaveLength(6);
  expect(s.evaluations[5][1]).toBe(s.testLossAfter);
  expect(stdout).toMatch(/trainable parameters\s+[\d,]+ of [\d,]+/);
  expect(stdout).toMatch(/max \|Δ logit\| = /);
  expect(stdout).toMatch(/step \d+\/\d+ \| loss [\d.]+ \| \d+ tok\/s \| ETA/);
}

describe('pnpm demo --quick', () => {
  it('fine-tunes the shipped Llama with LoRA, reports what LoRA saves and BLEU', async () => {
    const { stdout, out: dir, summary: s } = await runDemo();
    const c = config('llama-shakespeare-brown');
    const { hidden_size: d, num_hidden_layers: L, intermediate_size: I, vocab_size: V } = c;
    const kv = c.num_key_value_heads * c.head_dim;
    // Llama parameters: tied embeddings, per layer q/o (d × d), k/v (d × kv), SwiGLU (3 × d × I), 2 RMSNorms; final norm
    const base = V * d + L * (2 * d * d + 2 * d * kv + 3 * d * I + 2 * d) + d;
    // LoRA r=8 on the seven projections: A [r, in] + B [out, r] each
    const r = 8;
    const lora = L * r * (2 * (d + d) + 2 * (d + kv) + 2 * (d + I) + (I + d));
    expect(s.modelType).toBe('llama');
    checkCommon(s, stdout, base, lora, dir, L * 7 * 2);
    // BLEU of the quick run's 4 MRs, before and after, from greedy replies
    expect(s.bleu?.mrs).toBe(4);
    expect(s.bleu?.before).toBeGreaterThanOrEqual(0);
    expect(s.bleu?.after).toBeLessThanOrEqual(1);
    expect(s.bleu?.detailAfter.precisions).toHaveLength(4);
    expect(stdout).toMatch(/BLEU-4 \(4 test MRs\)\s+[\d.]+ → [\d.]+/);
  }, 240_000);

  it('--checkpoint examples/checkpoints/shakespeare-char still fine-tunes the character GPT-2', async () => {
    const {
      stdout,
      out: dir,
      summary: s,
    } = await runDemo('--checkpoint', join(root, 'examples/checkpoints/shakespeare-char'));
    const { n_embd: d, n_layer: L, vocab_size: V, n_positions: P } = config('shakespeare-char');
    // GPT-2 parameters: embeddings, per layer 2 LayerNorms + c_attn + c_proj + MLP, final LayerNorm
    const base =
      V * d +
      P * d +
      L * (4 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)) +
      2 * d;
    // LoRA r=8 on c_attn (d → 3d), attn.c_proj (d → d), mlp.c_fc (d → 4d), mlp.c_proj (4d → d): A [r, in] + B [out, r]
    const r = 8;
    const lora = L * r * (d + 3 * d + (d + d) + (d + 4 * d) + (4 * d + d));
    expect(s.modelType).toBe('gpt2');
    checkCommon(s, stdout, base, lora, dir, L * 4 * 2);
    // the quick run's 4 MRs and 24-character replies fit its 128 positions (the full run's 50 do not)
    expect(s.bleu?.mrs).toBe(4);
  }, 180_000);
});

describe('example scripts: arguments', () => {
  const run = async (...args: string[]) => {
    try {
      const r = await promisify(execFile)(
        process.execPath,
        ['--conditions=source', '--import', 'tsx', ...args],
        {
          cwd: root,
        },
      );
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      return { code: err.code, stdout: err.stdout, stderr: err.stderr };
    }
  };

  it('--help prints the usage; a bad value or flag prints one line, no stack trace', async () => {
    const [help, steps, device, flag, pretrainHelp, llamaHelp] = await Promise.all([
      run('examples/demo.ts', '--help'),
      run('examples/demo.ts', '--steps', 'abc'),
      run('examples/demo.ts', '--device', 'tpu'),
      run('examples/demo.ts', '--stpes', '3'),
      run('examples/pretrain-shakespeare.ts', '--help'),
      run('examples/pretrain-llama.ts', '--help'),
    ]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: pnpm demo \[options\]/);
    expect(help.stdout).toMatch(/--steps <value>\s+LoRA optimizer steps/);
    expect(help.stdout).toMatch(/--out <value>\s+.*\(default: out\/demo\)/);
    expect([steps.code, device.code, flag.code]).toEqual([2, 2, 2]);
    expect(steps.stderr).toBe("demo: --steps must be an integer ≥ 1, got 'abc'\n");
    expect(device.stderr).toBe("demo: --device must be one of auto, cpu, webgpu, got 'tpu'\n");
    expect(flag.stderr).toMatch(/^demo: Unknown option '--stpes' \(see --help\)\n$/);
    // the pre-training script writes into out/, not over the shipped checkpoint
    expect(pretrainHelp.code).toBe(0);
    expect(pretrainHelp.stdout).toMatch(
      /--out <value>\s+output model directory \(default: out\/shakespeare-char\)/,
    );
    expect(llamaHelp.code).toBe(0);
    expect(llamaHelp.stdout).toMatch(
      /--out <value>\s+output model directory \(default: out\/llama-shakespeare-brown\)/,
    );
    expect(llamaHelp.stdout).toMatch(/--seconds <value>\s+training time budget/);
  }, 60_000);
});
