/**
 * Pre-trains the small character-level GPT-2 the demo starts from, on Tiny Shakespeare, and writes
 * it to out/shakespeare-char/ (config.json, model.safetensors, tokenizer.json, training.json). The
 * committed checkpoint in examples/checkpoints/shakespeare-char/ was made by this script with its
 * defaults; `--out examples/checkpoints/shakespeare-char` replaces it.
 *
 * Run: node --conditions=source --import tsx examples/pretrain-shakespeare.ts [--steps N] [--device cpu|webgpu|auto]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fromPretrained, savePretrained } from '@lowrank/models/node';
import * as lr from 'lowrank';
import { cliFlags } from './args.js';

const values = cliFlags(
  'pretrain-shakespeare',
  {
    steps: { help: 'optimizer steps', positiveInt: true, default: '600' },
    lr: { help: 'peak learning rate', positive: true, default: '3e-3' },
    init: { help: 'continue from this model directory' },
    device: { help: 'where to run', choices: ['auto', 'cpu', 'webgpu'], default: 'cpu' },
    // not the shipped checkpoint: refreshing it is a deliberate --out examples/checkpoints/shakespeare-char
    out: { help: 'output model directory', default: 'out/shakespeare-char' },
  },
  'Usage: node --conditions=source --import tsx examples/pretrain-shakespeare.ts [options]',
) as { steps: string; lr: string; init?: string; device: string; out: string };
const steps = Number(values.steps);
const { device } = await lr.init({ backend: values.device as 'cpu' | 'webgpu' | 'auto' });
const data = (p: string): string => readFileSync(new URL(`../data/${p}`, import.meta.url), 'utf8');
const shakespeare = data('tinyshakespeare/input.txt');
// one vocabulary for both corpora, so the fine-tune on E2E needs no new embeddings
const tok = lr.CharTokenizer.fromText(shakespeare + data('e2e/valid.txt') + data('e2e/test.txt'), {
  extra: '0123456789',
  eos: '\n',
});
const tokens = Int32Array.from(tok.encode(shakespeare));
const { train, val } = lr.trainValSplit(tokens, 0.1);
const config = lr.gpt2Config({
  vocab_size: tok.vocabSize,
  n_positions: 128,
  n_embd: 64,
  n_layer: 4,
  n_head: 4,
  resid_pdrop: 0,
  embd_pdrop: 0,
  attn_pdrop: 0,
  bos_token_id: null,
  eos_token_id: null,
});
// --init continues from a saved checkpoint (weights only; a fresh optimizer and schedule)
const model = values.init ? await fromPretrained(values.init) : new lr.GPT2LMHeadModel(config, { seed: 0 });
const before = values.init
  ? (JSON.parse(readFileSync(`${values.init}/training.json`, 'utf8')) as { steps: number; seconds: number })
  : { steps: 0, seconds: 0 };
await model.to(device);
const trainer = new lr.LMTrainer(model, model.parameters(), {
  steps,
  batchSize: 8,
  blockSize: 128,
  lr: Number(values.lr),
  warmupSteps: Math.min(30, steps),
  minLrRatio: 0.1,
  weightDecay: 0.1,
  seed: before.steps, // new batches when continuing
});
const t0 = performance.now();
let last = t0;
for (let s = 1; s <= steps; s++) {
  const loss = await trainer.trainStep(train);
  if (s % 25 === 0 || s === steps) {
    const now = performance.now();
    const val25 = s % 100 === 0 || s === steps ? ` val ${(await trainer.evaluate(val, 4)).toFixed(3)}` : '';
    console.log(`step ${s}/${steps} loss ${loss.toFixed(3)}${val25} ${((now - last) / 25) | 0} ms/step`);
    last = now;
  }
}
const valLoss = await trainer.evaluate(val, 8);
const seconds = (performance.now() - t0) / 1000;
const { bytes } = await savePretrained(model, values.out, { tokenizer: tok.toJSON() });
writeFileSync(
  `${values.out}/training.json`,
  `${JSON.stringify({ corpus: 'data/tinyshakespeare/input.txt (first 90%)', steps: before.steps + steps, runs: [...((before as { runs?: unknown[] }).runs ?? (values.init ? [{ steps: before.steps, lr: 3e-3 }] : [])), { steps, lr: Number(values.lr) }], batchSize: 8, blockSize: 128, device, seconds: before.seconds + Math.round(seconds), valLoss, parameters: model.numParameters(), losses: trainer.losses.filter(([s]) => s % 10 === 0) }, null, 1)}\n`,
);
const sample = await lr.generate(model, tok.encode('ROMEO:\n'), {
  maxNewTokens: 200,
  temperature: 0.8,
  topK: 20,
  seed: 1,
});
console.log(
  `saved ${values.out} (${bytes} bytes, val loss ${valLoss.toFixed(3)}, ${seconds.toFixed(0)} s)\n${tok.decode(sample.tokens)}`,
);
