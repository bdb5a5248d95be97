import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';

/** Runs every ```ts block of the README, in order, as one module (examples that cannot rot). */
describe('README examples', () => {
  it('run, and print what the comments say', async () => {
    const readme = await readFile(join(import.meta.dirname, '../README.md'), 'utf8');
    const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
    expect(blocks.length).toBeGreaterThanOrEqual(8);
    const file = join(import.meta.dirname, `_readme_${process.pid}.generated.ts`);
    const logs: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
      logs.push(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
    });
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      await writeFile(file, `${blocks.join('\n')}\nexport {};\n`);
      await import(file);
    } finally {
      spy.mockRestore();
      warn.mockRestore();
      await rm(file, { force: true });
    }
    if (process.env.README_LOGS) await writeFile('/tmp/readme-logs.txt', logs.join('\n'));
    expect(logs[0]).toBe('trainable params: 512 || all params: 3,712 || trainable%: 13.7931');
    expect(logs).toContain('true LoraConfig: r must be a positive integer, got 0');
    expect(
      logs.some((l) => l.startsWith('LoraConfig: Target modules [q_proj] not found in the base model')),
    ).toBe(true);
    expect(logs).toContain('["default","french"] ["default"]');
    expect(logs).toContain(
      `["adapter_config.json: unknown key 'new_key' ignored (written by a newer PEFT?)"]`,
    );
    expect(logs).toContain('base_model.model.c_attn.lora_A.weight');
    expect(Number(logs[logs.indexOf('base_model.model.c_attn.lora_A.weight') + 1])).toBeCloseTo(1, 10);
    expect(
      logs.some((l) =>
        l.includes('\noptimizer state: 4.0 KiB (LoRA) vs 25.0 KiB (full fine-tuning) = 16.00%\n'),
      ),
    ).toBe(true);
    expect(logs).toContain('[16,48]');
  });
});
