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

describe('pnpm demo --quick', () => {
  it('fine-tunes with LoRA and reports what LoRA saves', async () => {
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
        out,
      ],
      { cwd: root, env: { ...process.env, LOWRANK_QUICK: '1' } },
    );
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    const config = JSON.parse(
      readFileSync(join(root, 'examples/checkpoints/shakespeare-char/config.json'), 'utf8'),
    );
    const { n_embd: d, n_layer: L, vocab_size: V, n_positions: P } = config;
    // GPT-2 parameters: embeddings, per layer 2 LayerNorms + c_attn + c_proj + MLP, final LayerNorm
    const base =
      V * d +
      P * d +
      L * (4 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)) +
      2 * d;
    // LoRA r=8 on c_attn (d → 3d), attn.c_proj (d → d), mlp.c_fc (d → 4d), mlp.c_proj (4d → d): A [r, in] + B [out, r]
    const r = 8;
    const lora = L * r * (d + 3 * d + (d + d) + (d + 4 * d) + (4 * d + d));
    expect(s.trainableParams).toBe(lora);
    expect(s.totalParams).toBe(base + lora);
    expect(s.optimizerStateBytes).toBe(2 * 4 * lora); // AdamW: exp_avg + exp_avg_sq, float32
    expect(s.fullOptimizerStateBytes).toBe(2 * 4 * base);
    expect(s.adapterBytes).toBeGreaterThan(4 * lora);
    expect(s.adapterBytes).toBeLessThan(4 * lora + 8192); // weights + safetensors header + adapter_config.json
    expect(s.fullCheckpointBytes).toBeGreaterThan(4 * base);
    expect(s.maxMergeDiff).toBeLessThan(1e-4);
    expect(s.testLossAfter).toBeLessThan(s.testLossBefore);
    expect(s.samples.length).toBeGreaterThan(0);
    expect(s.quick).toBe(true);
    expect(existsSync(join(out, 'adapter', 'adapter_model.safetensors'))).toBe(true);
    const svg = readFileSync(s.lossSvg, 'utf8');
    expect(svg).toMatch(/^<svg/);
    expect(svg.match(/<path /g)).toHaveLength(2);
    expect(stdout).toMatch(/trainable parameters\s+[\d,]+ of [\d,]+/);
    expect(stdout).toMatch(/max \|Δ logit\| = /);
    expect(stdout).toMatch(/step \d+\/\d+ \| loss [\d.]+ \| \d+ tok\/s \| ETA/);
  }, 90_000);
});
