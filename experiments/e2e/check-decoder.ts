/**
 * Checks `greedyBatch` against @lowrank/models' `generate` (greedy, one prompt at a time) on the
 * shipped Shakespeare checkpoint, with and without a (random, non-zero) LoRA adapter, for prompts
 * of different lengths: the left padding, per-row positions and masks must change nothing.
 *
 *   node --conditions=source --import tsx experiments/e2e/check-decoder.ts [--device cpu|webgpu]
 */
import { parseArgs } from 'node:util';
import * as lr from '../../packages/lowrank/src/index.js';
import { fromPretrained, loadTokenizer } from '../../packages/models/src/node.js';
import { greedyBatch } from './batched-generate.js';

const { values } = parseArgs({ options: { device: { type: 'string', default: 'cpu' } } });
process.env.XDG_RUNTIME_DIR ??= '/tmp';
await lr.init({ backend: values.device as lr.Device });
const dir = 'examples/checkpoints/shakespeare-char';
const tok = loadTokenizer(dir, 78);
const eos = tok.eosTokenId ?? 0;
const model = await fromPretrained(dir, { device: values.device as lr.Device });
const prompts = [
  'ROMEO:',
  'name : Aromi | food : French||',
  'First Citizen:\nBefore we proceed any further, hear me',
].map((s) => tok.encode(s));
async function compare(what: string, stop: boolean): Promise<void> {
  // without a stop token every row runs all 30 steps (rows stopping early are covered by stop = true)
  const batched = await greedyBatch(model, prompts, { maxNewTokens: 30, eosTokenId: stop ? eos : -1 });
  for (let i = 0; i < prompts.length; i++) {
    const one = await lr.generate(model, prompts[i], {
      maxNewTokens: 30,
      greedy: true,
      eosTokenId: stop ? eos : null,
    });
    const single = one.stoppedBy === 'eos' ? one.tokens.slice(0, -1) : one.tokens;
    if (single.join(',') !== batched.tokens[i].join(',')) {
      throw new Error(
        `${what}: prompt ${i}: batched ${JSON.stringify(tok.decode(batched.tokens[i]))} vs ${JSON.stringify(tok.decode(single))}`,
      );
    }
  }
  console.log(
    `${what}: batched = generate() on ${prompts.length} prompts | ${JSON.stringify(tok.decode(batched.tokens[0]))}`,
  );
}
await compare('base', false);
await compare('base', true);
lr.applyLora(model, {
  r: 4,
  targetModules: ['attn.c_attn', 'attn.c_proj'],
  fusedSlices: { c_attn: [true, false, true] },
  initLoraWeights: false,
  seed: 3,
});
await compare('LoRA (random A and B)', false);
await compare('LoRA (random A and B)', true);
