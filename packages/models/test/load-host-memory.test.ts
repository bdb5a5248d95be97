import '@lowrank/autograd';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { stateDictToSafetensors } from '@lowrank/nn';
import { describe, expect, it } from 'vitest';
import { AutoModelForCausalLM as BrowserAuto } from '../src/auto.js';
import { LlamaForCausalLM } from '../src/llama.js';
import { AutoModelForCausalLM } from '../src/node.js';

/**
 * The host memory a load holds besides the model, measured: JavaScript ArrayBuffer bytes
 * (`process.memoryUsage().arrayBuffers`, after a full GC at every tensor's progress call; the
 * model's CPU storages live in the Wasm heap, which this does not count) above the level before
 * the load, on a synthetic untied Llama whose 7.3 MB file is large against one tensor (1 MiB).
 */
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const arrayBuffers = () => {
  gc();
  return process.memoryUsage().arrayBuffers;
};

const config = {
  model_type: 'llama',
  vocab_size: 1024,
  hidden_size: 256,
  intermediate_size: 512,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  max_position_embeddings: 64,
  tie_word_embeddings: false,
};

async function writeCheckpoint(dir: string): Promise<void> {
  const src = new LlamaForCausalLM(config, { seed: 1 });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(join(dir, 'model.safetensors'), await stateDictToSafetensors(src.stateDict()));
  src.dispose();
}

describe('host memory of a load', () => {
  it('from a file: at most one tensor above the model; from bytes: the file once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lowrank-load-'));
    try {
      await writeCheckpoint(dir); // in its own frame: its buffers are garbage once it returns
      const fileBytes = statSync(join(dir, 'model.safetensors')).size;
      const largest = 1024 * 256 * 4;
      const settle = async () => {
        for (let i = 0; i < 3; i++) {
          gc();
          await new Promise((r) => setTimeout(r, 20));
        }
        return arrayBuffers();
      };
      const measure = async (load: (progress: () => void) => Promise<{ dispose(): void }>) => {
        const base = await settle();
        let peak = Number.NEGATIVE_INFINITY;
        const model = await load(() => {
          peak = Math.max(peak, arrayBuffers() - base);
        });
        const kept = (await settle()) - base;
        model.dispose();
        return { peak, kept };
      };
      const file = await measure((onLoadProgress) =>
        AutoModelForCausalLM.fromPretrained(dir, { onLoadProgress }),
      );
      let held: Uint8Array | null = new Uint8Array(readFileSync(join(dir, 'model.safetensors')));
      const bytes = await measure(async (onLoadProgress) => {
        const m = await BrowserAuto.fromFiles(
          async (name) =>
            name === 'model.safetensors' ? held : new Uint8Array(readFileSync(join(dir, name))),
          { onLoadProgress },
        );
        held = null;
        return m;
      });
      // measured: file peak 1,048,576 B (one tensor: the largest, embed/lm_head 1024x256 f32) of a
      // 7,347,344 B file; bytes peak 524,288 B above the held file. A tensor's read buffer and its
      // decoded copy may both be alive at a sample: 2 tensors is the bound; the file is 7x that
      expect(fileBytes).toBeGreaterThan(6 * largest);
      expect(file.peak).toBeLessThanOrEqual(2 * largest);
      expect(file.peak).toBeGreaterThan(0); // the measure sees the tensor in hand
      expect(bytes.peak).toBeLessThanOrEqual(2 * largest); // above the caller's bytes: file + one tensor
      expect(bytes.kept).toBeLessThanOrEqual(-fileBytes + largest); // the bytes were the file, freed after
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
