/**
 * QLoRA quality (issue #18): LoRA fine-tuning of a pre-trained checkpoint on E2E NLG (as
 * examples/demo.ts: the validation split trains, the test split is held out, the loss is on the
 * reference text only) with the frozen base in float32 and stored as NF4 / int8 / f16, from the
 * same weights, seed, batches and steps. Prints, per base format, the held-out loss before and
 * after training and its ratio to the float32 base's (the target: NF4 within 2 %).
 *
 *   node --conditions=source --import tsx bench/qlora-quality.ts [--checkpoint examples/checkpoints/shakespeare-char[,DIR…]]
 *   options: --bits f32,nf4,int8  --block 64  --dq 0|1  --steps 300  --batch 8  --seq 128  --lr 1e-2
 *            --r 8 --alpha 16  --eval-batches 16  --targets (default: every projection of the model)
 *            --device cpu|webgpu  --compile 0|1  --seed 0
 */

import { readFileSync } from 'node:fs';
import { applyLora } from '../packages/lora/src/index.js';
import { e2eStream, evaluateLM, GPT2LMHeadModel, LMTrainer, parseE2E } from '../packages/models/src/index.js';
import { AutoModelForCausalLM, loadTokenizer } from '../packages/models/src/node.js';
import { modelFootprint, quantizeModel } from '../packages/nn/src/index.js';
import * as lr from '../packages/tensor/src/index.js';
import { arg, numberArg } from './args.js';

const device = arg('device', 'cpu') as lr.Device;
const CHECKPOINTS = arg('checkpoint', 'examples/checkpoints/shakespeare-char').split(',');
const BITS = arg('bits', 'f32,nf4,int8').split(',') as ('f32' | lr.QuantFormat)[];
const BLOCK = numberArg('block', 64);
const DQ = numberArg('dq', 0) !== 0;
const STEPS = numberArg('steps', 300);
const BATCH = numberArg('batch', 8);
const SEQ = numberArg('seq', 128);
const LR = numberArg('lr', 1e-2);
const R = numberArg('r', 8);
const ALPHA = numberArg('alpha', 16);
const EVAL_BATCHES = numberArg('eval-batches', 16);
const TARGETS = arg('targets', '');
const COMPILE = numberArg('compile', 1) !== 0;
// LoRA's initialisation and the batch sampler (the held-out windows stay seed 7)
const SEED = numberArg('seed', 0);

const e2e = (f: string) => parseE2E(readFileSync(new URL(`../data/e2e/${f}`, import.meta.url), 'utf8'));
const trainSet = e2e('valid.txt'); // the official train split is not shipped: train on dev, test on test
const testSet = e2e('test.txt');

interface Row {
  checkpoint: string;
  base: string;
  'base/f32 bytes': string;
  'held-out before': string;
  'held-out after': string;
  'after / f32 after': string;
  'train s': string;
}

async function run(
  dir: string,
  bits: 'f32' | lr.QuantFormat,
  f32After: number | null,
): Promise<[Row, number]> {
  // float32 in memory (an f16 file is widened), so the f32 row is a float32 base
  const model = await AutoModelForCausalLM.fromPretrained(dir, { device: 'cpu' });
  const tok = loadTokenizer(dir, model.config.vocab_size);
  const train = e2eStream(trainSet, (s) => tok.encode(s));
  const test = e2eStream(testSet, (s) => tok.encode(s));
  const gpt2 = model instanceof GPT2LMHeadModel;
  // a GPT-2 head is tied to wte (not a separate Linear to quantize); a tied Llama has no lm_head
  if (bits !== 'f32')
    await quantizeModel(model, { bits, blockSize: BLOCK, doubleQuant: DQ, skip: ['lm_head'] });
  await model.to(device);
  const fp = modelFootprint(model);
  // the same windows of the test split every time (seed 7), the loss on the references only
  const heldOut = (): Promise<number> =>
    evaluateLM(model, test.tokens, {
      batches: EVAL_BATCHES,
      batchSize: BATCH,
      blockSize: SEQ,
      seed: 7,
      mask: test.targetMask,
    });
  const before = await heldOut();
  const targets = TARGETS
    ? TARGETS.split(',')
    : gpt2
      ? ['c_attn', 'c_proj', 'c_fc']
      : ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  const lora = applyLora(model, { r: R, loraAlpha: ALPHA, targetModules: targets, seed: SEED });
  const trainer = new LMTrainer(model, lora.trainableParameters(), {
    steps: STEPS,
    batchSize: BATCH,
    blockSize: SEQ,
    lr: LR,
    warmupSteps: Math.max(1, Math.floor(STEPS / 10)),
    weightDecay: 0,
    seed: SEED,
    compile: COMPILE,
  });
  const t0 = performance.now();
  let last = Number.NaN;
  for (let s = 1; s <= STEPS; s++) {
    last = await trainer.trainStep(train.tokens, train.targetMask);
    if (s === 1 || s % 50 === 0) console.log(`  ${bits} step ${s}/${STEPS} train loss ${last.toFixed(4)}`);
  }
  const trainS = (performance.now() - t0) / 1000;
  const after = await heldOut();
  trainer.compiledStep.dispose();
  trainer.optimizer.dispose();
  model.dispose();
  const ref = f32After ?? (bits === 'f32' ? after : Number.NaN);
  return [
    {
      checkpoint: dir.split('/').pop() ?? dir,
      base:
        bits === 'f32'
          ? 'f32'
          : `${bits}${bits === 'nf4' || bits === 'int8' ? ` b${BLOCK}${DQ ? ' dq' : ''}` : ''}`,
      'base/f32 bytes': fp.quantized.f32Bytes ? (fp.quantized.bytes / fp.quantized.f32Bytes).toFixed(3) : '1',
      'held-out before': before.toFixed(4),
      'held-out after': after.toFixed(4),
      'after / f32 after': (after / ref).toFixed(4),
      'train s': trainS.toFixed(0),
    },
    after,
  ];
}

const r = await lr.init({ backend: device === 'webgpu' ? 'webgpu' : 'cpu' });
console.log(
  `QLoRA quality on ${r.description}: E2E (train on valid: ${trainSet.length} lines, held out: test, ${testSet.length} lines), LoRA r=${R} α=${ALPHA}, ${STEPS} steps of ${BATCH}×${SEQ}, lr ${LR}, held-out loss over ${EVAL_BATCHES} batches (seed 7), seed ${SEED}${COMPILE ? ', compiled steps' : ''}`,
);
const rows: Row[] = [];
for (const dir of CHECKPOINTS) {
  let f32After: number | null = null;
  for (const bits of BITS) {
    const [row, after] = await run(dir, bits, f32After);
    if (bits === 'f32') f32After = after;
    rows.push(row);
    console.log(
      `  ${row.checkpoint} ${row.base}: held-out ${row['held-out before']} → ${row['held-out after']} (${row['after / f32 after']}× f32)`,
    );
  }
}
console.table(rows);
if (device === 'webgpu') lr.destroyWebGPU();
