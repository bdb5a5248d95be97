import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { lowrank } from './run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'lowrank-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const text = join(dir, 'text.txt');
writeFileSync(
  text,
  readFileSync(new URL('../../../data/tinyshakespeare/input.txt', import.meta.url), 'utf8').slice(0, 20000),
);
const e2e = join(dir, 'e2e.txt');
writeFileSync(
  e2e,
  readFileSync(new URL('../../../data/e2e/valid.txt', import.meta.url), 'utf8')
    .split('\n')
    .slice(0, 300)
    .join('\n'),
);
const small = [
  '--tokenizer',
  'byte',
  '--n-embd',
  '16',
  '--n-layer',
  '1',
  '--n-head',
  '2',
  '--n-positions',
  '32',
  '--block-size',
  '32',
  '--batch-size',
  '2',
];

describe('lowrank CLI', () => {
  it('train --grad-accum 2 of batch 1 ≈ batch 2 (same windows, one optimizer step each)', async () => {
    const one = small.map((v, i) => (small[i - 1] === '--batch-size' ? '1' : v));
    const run = (out: string, ...flags: string[]) =>
      lowrank('train', '--data', text, '--out', join(dir, out), '--steps', '3', '--lr', '0.01', ...flags);
    const [accum, whole] = await Promise.all([
      run('accum', ...one, '--grad-accum', '2'),
      run('whole', ...small),
    ]);
    expect(accum.code, accum.stderr).toBe(0);
    expect(whole.code, whole.stderr).toBe(0);
    const losses = (out: string) => [...out.matchAll(/step \d+\/3 loss ([\d.]+)/g)].map((m) => Number(m[1]));
    expect(losses(accum.stdout)).toHaveLength(3);
    const w = losses(whole.stdout);
    losses(accum.stdout).forEach((l, i) => {
      expect(l).toBeCloseTo(w[i], 3);
    });
    expect(JSON.parse(readFileSync(join(dir, 'accum', 'train_args.json'), 'utf8')).gradAccum).toBe(2);
  }, 120_000);

  it('train → resume (bit-identical) → LoRA train → generate → merge → inspect', async () => {
    const base = join(dir, 'base');
    const straight = join(dir, 'straight');
    const eager = join(dir, 'eager');
    // a run interrupted after step 2 and resumed must equal a run that was not interrupted, and
    // one with eager steps (--no-compile) too
    const [a, b, c] = await Promise.all([
      lowrank('train', '--data', text, '--out', straight, '--steps', '4', '--lr', '0.01', ...small),
      lowrank(
        'train',
        '--data',
        text,
        '--out',
        base,
        '--steps',
        '4',
        '--lr',
        '0.01',
        '--stop-after',
        '2',
        ...small,
      ),
      lowrank(
        'train',
        '--data',
        text,
        '--out',
        eager,
        '--steps',
        '4',
        '--lr',
        '0.01',
        '--no-compile',
        ...small,
      ),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(c.code, c.stderr).toBe(0);
    expect(readFileSync(join(eager, 'model.safetensors'))).toEqual(
      readFileSync(join(straight, 'model.safetensors')),
    );
    expect(b.stdout).toMatch(/stopped at step 2/);
    const resumed = await lowrank('train', '--out', base, '--resume');
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resumed .* at step 2\/4/);
    expect(resumed.stdout).toMatch(/step 4\/4 loss/);
    expect(readFileSync(join(base, 'model.safetensors'))).toEqual(
      readFileSync(join(straight, 'model.safetensors')),
    );
    for (const f of ['config.json', 'tokenizer.json', 'checkpoint.safetensors', 'train_args.json'])
      expect(existsSync(join(base, f))).toBe(true);

    // LoRA from a JSON config file, one flag overriding it
    const cfg = join(dir, 'lora.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        lora: true,
        r: 2,
        alpha: 4,
        targets: ['c_attn'],
        steps: 5,
        batchSize: 2,
        blockSize: 32,
        lr: 0.05,
      }),
    );
    const adapter = join(dir, 'adapter');
    const t = await lowrank(
      'train',
      '--config',
      cfg,
      '--init',
      base,
      '--data',
      e2e,
      '--format',
      'e2e',
      '--out',
      adapter,
      '--steps',
      '3',
      '--eval-every',
      '3',
    );
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/LoRA training on (cpu|webgpu): trainable params: 128 \|\|/); // A [2, 16] + B [48, 2], one layer
    expect(t.stdout).toMatch(/step 3\/3 loss [\d.]+ val [\d.]+/);
    expect(
      existsSync(join(adapter, 'adapter_config.json')) &&
        existsSync(join(adapter, 'adapter_model.safetensors')),
    ).toBe(true);
    const acfg = JSON.parse(readFileSync(join(adapter, 'adapter_config.json'), 'utf8'));
    expect([acfg.r, acfg.lora_alpha, acfg.target_modules]).toEqual([2, 4, ['c_attn']]);

    const [g1, g2, merged] = await Promise.all([
      lowrank(
        'generate',
        '--model',
        base,
        '--adapter',
        adapter,
        '--prompt',
        'ROMEO:',
        '--max-tokens',
        '12',
        '--greedy',
      ),
      lowrank(
        'generate',
        '--model',
        base,
        '--adapter',
        adapter,
        '--prompt',
        'ROMEO:',
        '--max-tokens',
        '12',
        '--greedy',
      ),
      lowrank('merge', '--model', base, '--adapter', adapter, '--out', join(dir, 'merged')),
    ]);
    expect(g1.code, g1.stderr).toBe(0);
    expect(g1.stdout.startsWith('ROMEO:')).toBe(true);
    expect(g1.stdout).toMatch(/\[12 tokens, stopped by maxNewTokens\]/);
    expect(g1.stdout).toBe(g2.stdout);
    expect(merged.code, merged.stderr).toBe(0);
    const diff = Number(/max \|merged − unmerged\| logit (\S+)/.exec(merged.stdout)?.[1]);
    expect(diff).toBeLessThan(1e-4);

    const [im, ia] = await Promise.all([
      lowrank('inspect', join(dir, 'merged'), '--json'),
      lowrank('inspect', adapter),
    ]);
    expect(im.code, im.stderr).toBe(0);
    const report = JSON.parse(im.stdout);
    const baseReport = JSON.parse((await lowrank('inspect', base, '--json')).stdout);
    expect(report.loraParameters).toBe(0);
    expect(report.tensors.map((x: { name: string }) => x.name)).toContain(
      'transformer.h.0.attn.c_attn.weight',
    );
    expect(baseReport.parameters).toBe(report.parameters); // the run's checkpoint.safetensors is not counted
    expect(ia.stdout).toMatch(/adapter: LORA r=2, alpha=4/);
    expect(ia.stdout).toMatch(/2 tensors, 128 parameters \(128 LoRA\)/);
  }, 120_000);

  it('bad flags and missing files: one line, exit code ≠ 0', async () => {
    const cases = await Promise.all([
      lowrank('train', '--bogus'),
      lowrank('train', '--steps', 'abc', '--data', text, '--out', join(dir, 'x')),
      lowrank('train', '--data', join(dir, 'missing.txt'), '--out', join(dir, 'y')),
      lowrank('generate', '--model', join(dir, 'nope'), '--prompt', 'hi'),
      lowrank('train', '--lora', '--data', text, '--out', join(dir, 'z')),
      lowrank('nosuchcommand'),
    ]);
    const expected = [
      /unknown option '--bogus'/,
      /--steps <n>' argument 'abc' is invalid/,
      /training data not found: .*missing\.txt/,
      /model directory not found/,
      /--lora needs a base model/,
      /unknown command 'nosuchcommand'/,
    ];
    cases.forEach((c, i) => {
      expect(c.code, c.stderr).not.toBe(0);
      expect(c.stderr.trim().split('\n'), c.stderr).toHaveLength(1);
      expect(c.stderr).toMatch(expected[i]);
      expect(c.stderr).toMatch(/^lowrank: /);
    });
    const help = await Promise.all(
      ['train', 'generate', 'merge', 'inspect'].map((c) => lowrank(c, '--help')),
    );
    for (const h of help) {
      expect(h.code).toBe(0);
      expect(h.stdout).toMatch(/^Usage: lowrank \w+ /);
    }
  }, 60_000);
});
