import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serializeSafetensors } from '@lowrank/nn';
import { afterAll, describe, expect, it } from 'vitest';
import { lowrank } from './run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'lowrank-cli-hard-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const text = join(dir, 'text.txt');
writeFileSync(
  text,
  readFileSync(new URL('../../../data/tinyshakespeare/input.txt', import.meta.url), 'utf8').slice(0, 8000),
);
const small = [
  '--tokenizer',
  'byte',
  '--n-embd',
  '8',
  '--n-layer',
  '1',
  '--n-head',
  '2',
  '--n-positions',
  '16',
];
const tiny = [...small, '--block-size', '16', '--batch-size', '2', '--data', text];

describe('lowrank CLI: everyday use and bad input', () => {
  it('--version, defaults in train --help, whole error messages with their hints', async () => {
    const [v, help, typo] = await Promise.all([
      lowrank('--version'),
      lowrank('train', '--help'),
      lowrank('train', '--dat', text),
    ]);
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(pkg.version);
    expect(help.stdout).toMatch(/--steps <n>\s+optimizer steps \(default: 100\)/);
    expect(help.stdout).toMatch(
      /--targets <names\.\.\.>[\s\S]*\(default:\s+c_attn\s+for\s+GPT-2,\s+q_proj\s+v_proj/,
    );
    expect(help.stdout).toMatch(/--allow-nonfinite/);
    expect(typo.code).not.toBe(0);
    expect(typo.stderr).toMatch(/unknown option '--dat'/);
    expect(typo.stderr).toMatch(/Did you mean --data\?/);
    // the root README documents every command
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## The command line'), readme.indexOf('## Documentation'));
    for (const c of ['train', 'generate', 'merge', 'inspect'])
      expect(section).toContain(`pnpm lowrank ${c} `);
    for (const f of ['--resume', '--version', '--config', '--allow-nonfinite']) expect(section).toContain(f);
  }, 60_000);

  it('a copied and renamed run resumes in its new directory; the original is untouched', async () => {
    const original = join(dir, 'original');
    const first = await lowrank('train', ...tiny, '--out', original, '--steps', '3', '--stop-after', '1');
    expect(first.code, first.stderr).toBe(0);
    const copy = join(dir, 'copy');
    cpSync(original, copy, { recursive: true });
    const renamed = join(dir, 'renamed');
    renameSync(original, renamed);
    const r = await lowrank('train', '--resume', '--out', copy);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/resumed .*copy at step 1\/3/);
    expect(r.stdout).toMatch(/validation loss [\d.]+ at step 3/); // by default at the end
    expect(existsSync(join(copy, 'model.safetensors'))).toBe(true);
    expect(existsSync(join(renamed, 'model.safetensors'))).toBe(false);
    expect(existsSync(original)).toBe(false);

    // an adapter that does not fit: the whole key list, not just its first line
    const bad = join(dir, 'bad-adapter');
    mkdirSync(bad);
    writeFileSync(
      join(bad, 'adapter_config.json'),
      JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['c_attn'] }),
    );
    const key = 'base_model.model.transformer.h.0.attn.c_attn';
    const A = { dtype: 'float32' as const, shape: [2, 99], data: new Float32Array(198) };
    writeFileSync(
      join(bad, 'adapter_model.safetensors'),
      serializeSafetensors(new Map([[`${key}.lora_A.weight`, A]])),
    );
    const g = await lowrank(
      'generate',
      '--model',
      copy,
      '--adapter',
      bad,
      '--prompt',
      'hi',
      '--max-tokens',
      '2',
    );
    expect(g.code).not.toBe(0);
    expect(g.stderr).toMatch(/does not fit this model:\n/);
    expect(g.stderr).toContain(`missing key ${key}.lora_B.weight`);
  }, 90_000);

  it('a resumed run with a bad argument or corrupt tensor data is refused, naming what is wrong', async () => {
    const run = join(dir, 'run');
    const first = await lowrank('train', ...tiny, '--out', run, '--steps', '2', '--stop-after', '1');
    expect(first.code, first.stderr).toBe(0);
    const argsPath = join(run, 'train_args.json');
    const args = JSON.parse(readFileSync(argsPath, 'utf8'));
    const ckpt = join(run, 'checkpoint.safetensors');
    const bytes = readFileSync(ckpt);

    const badArgs = join(dir, 'bad-args');
    cpSync(run, badArgs, { recursive: true });
    writeFileSync(
      join(badArgs, 'train_args.json'),
      JSON.stringify({ ...args, steps: -7, lr: 'x', bogus: 1 }),
    );
    const corrupt = join(dir, 'corrupt');
    cpSync(run, corrupt, { recursive: true });
    const flipped = Buffer.from(bytes);
    flipped.fill(0xff, flipped.length - 8);
    writeFileSync(join(corrupt, 'checkpoint.safetensors'), flipped);

    const [a, c, ignored] = await Promise.all([
      lowrank('train', '--resume', '--out', badArgs),
      lowrank('train', '--resume', '--out', corrupt),
      lowrank('train', '--resume', '--out', run, '--lr', '0.5', '--seed', '3'),
    ]);
    expect(ignored.code).not.toBe(0);
    expect(ignored.stderr).toMatch(/--lr, --seed cannot change when resuming/);
    expect(a.code).not.toBe(0);
    // every problem, one per line
    expect(a.stderr).toMatch(
      /'steps' must be an integer ≥ 1, got -7\n.*'lr' must be a number in \[0, Infinity\], got "x"\n.*unknown key 'bogus'/,
    );
    expect(c.code).not.toBe(0);
    expect(c.stderr).toMatch(/tensor data is corrupt: checksum/);
  }, 90_000);
});
