/**
 * The main demo: LoRA fine-tuning of a small GPT, end to end, in a few minutes on a laptop CPU.
 *
 *   1. loads a character-level GPT-2 pre-trained on Tiny Shakespeare by our own engine
 *      (shipped in examples/checkpoints/, made by examples/pretrain-shakespeare.ts);
 *   2. LoRA-fine-tunes it on the E2E NLG restaurant data-to-text task (the LoRA paper's Table 3
 *      task): only A and B of every attention projection train, everything else is frozen;
 *   3. ends with what LoRA buys: trainable parameters, optimizer state and checkpoint size against
 *      full fine-tuning, merged = unmerged outputs, generations before/after, a loss-curve SVG.
 *
 * Run: pnpm demo [--quick] [--device auto|cpu|webgpu] [--steps N] [--out DIR] [--eager] (pnpm demo --help)
 * (LOWRANK_QUICK=1 is --quick: a shortened run for CI.) No download: data and checkpoint ship in the repo.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyLora, trainableParameters } from '@lowrank/lora';
import { saveAdapter } from '@lowrank/lora/node';
import { fromPretrained, loadTokenizer } from '@lowrank/models/node';
import { serializeSafetensors, toHost } from '@lowrank/nn';
import { SingleBar } from 'cli-progress';
import * as lr from 'lowrank';
import { cliFlags } from './args.js';

const args = cliFlags(
  'demo',
  {
    quick: {
      type: 'boolean',
      help: 'a shortened run (10 steps; LOWRANK_QUICK=1 does the same)',
      default: process.env.LOWRANK_QUICK === '1',
    },
    device: { help: 'where to run', choices: ['auto', 'cpu', 'webgpu'], default: 'auto' },
    steps: { help: 'LoRA optimizer steps (default: 100, 10 with --quick)', positiveInt: true },
    out: { help: 'output directory (adapter, loss.svg, summary.json)', default: 'out/demo' },
    checkpoint: { help: 'base model directory (default: the shipped Shakespeare model)' },
    eager: { type: 'boolean', help: 'run every step eagerly (default: compiled steps, lr.compile)' },
  },
  'Usage: pnpm demo [options]\n\nLoRA fine-tuning of a small pre-trained GPT-2 on the E2E NLG task, end to end.',
) as { quick: boolean; device: string; steps?: string; out: string; checkpoint?: string; eager?: boolean };
const quick = args.quick === true;
const settings = {
  steps: args.steps ? Number(args.steps) : quick ? 10 : 100,
  batchSize: 8,
  blockSize: 128,
  lr: 1e-2,
  r: 8,
  loraAlpha: 16,
  evalBatches: quick ? 1 : 4,
  genTokens: quick ? 40 : 120,
};
const here = (p: string): string => new URL(p, import.meta.url).pathname;
const t0 = performance.now();

// ---- device: a hardware GPU, else the CPU (init's 'auto' rule: a software adapter is slower) ----
const { device, description, reason } = await lr.init({
  backend: args.device as lr.Device | 'auto',
  onNotice: (m) => console.log(m),
});
const why = reason === 'asked for' ? '' : `\n   (${reason})`;
console.log(`lowrank demo on ${device}: ${description}${quick ? ' (quick mode)' : ''}${why}\n`);

// ---- 1. the pre-trained model ----------------------------------------------------------------
const ckpt = args.checkpoint ?? here('./checkpoints/shakespeare-char');
const model = await fromPretrained(ckpt, { device });
const tok = loadTokenizer(ckpt, model.config.vocab_size);
const pretrain = JSON.parse(readFileSync(join(ckpt, 'training.json'), 'utf8')) as {
  steps: number;
  valLoss: number;
};
const c = model.config;
console.log(
  `1. GPT-2 (char-level, vocab ${c.vocab_size}, ${c.n_layer} layers, width ${c.n_embd}, ${c.n_head} heads, context ${c.n_positions}),` +
    ` ${model.numParameters().toLocaleString('en-US')} parameters,\n   pre-trained on Tiny Shakespeare for ${pretrain.steps} steps (val loss ${pretrain.valLoss.toFixed(3)}).`,
);

// ---- 2. E2E data -------------------------------------------------------------------------------
const e2e = (f: string): lr.E2EExample[] => lr.parseE2E(readFileSync(here(`../data/e2e/${f}`), 'utf8'));
const trainSet = e2e('valid.txt'); // the official train split is not shipped: train on dev, test on test
const testSet = e2e('test.txt');
// `mr||ref\n` lines as one stream; the loss is on the reference text only (mask), as in the paper
const encode = (s: string): number[] => tok.encode(s);
const train = lr.e2eStream(trainSet, encode);
const test = lr.e2eStream(testSet, encode);
const prompts = lr.groupByMr(testSet).slice(0, quick ? 1 : 2);
console.log(
  `2. E2E NLG (restaurant data-to-text): ${trainSet.length} training lines (${train.tokens.length.toLocaleString('en-US')} characters), ${testSet.length} test lines.`,
);

async function sample(mr: string): Promise<string> {
  const prompt = tok.encode(lr.e2ePrompt(mr));
  const r = await lr.generate(model, prompt, {
    maxNewTokens: settings.genTokens,
    temperature: 0.7,
    topK: 10,
    seed: 0,
    eosTokenId: tok.eosTokenId,
  });
  return tok.decode(r.tokens).replace(/\n$/, '');
}
const evalLoss = (): Promise<number> =>
  lr.evaluateLM(model, test.tokens, {
    batches: settings.evalBatches,
    batchSize: 8,
    blockSize: settings.blockSize,
    seed: 7,
    mask: test.targetMask,
  });

const lossBefore = await evalLoss();
const before = await Promise.all(prompts.map(async (p) => sample(p.mr)));

// ---- 3. LoRA ---------------------------------------------------------------------------------------
const lora = applyLora(model, {
  r: settings.r,
  loraAlpha: settings.loraAlpha,
  targetModules: ['c_attn', 'c_proj', 'c_fc'], // every projection of every block (q|k|v, out, MLP)
  seed: 0,
});
const report = trainableParameters(model);
console.log(`3. LoRA r=${settings.r}, alpha=${settings.loraAlpha} on c_attn, c_proj, c_fc: ${report}\n`);
const trainer = new lr.LMTrainer(model, lora.trainableParameters(), {
  steps: settings.steps,
  batchSize: settings.batchSize,
  blockSize: settings.blockSize,
  lr: settings.lr,
  warmupSteps: Math.max(1, Math.floor(settings.steps / 10)),
  weightDecay: 0,
  seed: 0,
  compile: args.eager !== true,
});
const tty = process.stdout.isTTY === true;
const bar = new SingleBar({
  format: '   {bar} step {value}/{total} | loss {loss} | {tps} tok/s | ETA {eta_formatted}',
  barsize: 24,
  hideCursor: true,
  noTTYOutput: false,
});
if (tty) bar.start(settings.steps, 0, { loss: '-', tps: '-' });
// the test loss at 5 points of the run, plotted with the training loss of every step
const evalEvery = Math.max(1, Math.round(settings.steps / 5));
const evaluations: [number, number][] = [[0, lossBefore]];
let evalSeconds = 0;
const trainStart = performance.now();
for (let s = 1; s <= settings.steps; s++) {
  const loss = await trainer.trainStep(train.tokens, train.targetMask);
  if (s % evalEvery === 0 || s === settings.steps) {
    const e0 = performance.now();
    evaluations.push([s, await evalLoss()]);
    evalSeconds += (performance.now() - e0) / 1000;
  }
  const tps = Math.round(
    (s * settings.batchSize * settings.blockSize) / ((performance.now() - trainStart) / 1000 - evalSeconds),
  );
  if (tty) bar.update(s, { loss: loss.toFixed(3), tps });
  else if (s === 1 || s % 10 === 0 || s === settings.steps) {
    const eta = (((performance.now() - trainStart) / s) * (settings.steps - s)) / 1000;
    console.log(
      `   step ${s}/${settings.steps} | loss ${loss.toFixed(3)} | ${tps} tok/s | ETA ${eta.toFixed(0)}s`,
    );
  }
}
if (tty) bar.stop();
// training time only (tokens/s would otherwise count the evaluations' forward passes)
const trainSeconds = (performance.now() - trainStart) / 1000 - evalSeconds;

const lossAfter = evaluations[evaluations.length - 1][1];
const after = await Promise.all(prompts.map(async (p) => sample(p.mr)));

// ---- 4. what LoRA buys -----------------------------------------------------------------------------
// merged ≡ unmerged: logits of a test batch with the adapter as a side path, then folded into W
const probeIds = lr.fromTypedArray(test.tokens.subarray(0, 2 * settings.blockSize), [2, settings.blockSize], {
  dtype: 'int32',
  device,
});
model.eval();
const logitsOf = async (): Promise<Float32Array> => {
  const t = lr.noGrad(() => model.forward(probeIds).logits);
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
};
const unmerged = await logitsOf();
lora.merge();
const merged = await logitsOf();
lora.unmerge();
probeIds.dispose();
let maxMergeDiff = 0;
for (let i = 0; i < merged.length; i++)
  maxMergeDiff = Math.max(maxMergeDiff, Math.abs(merged[i] - unmerged[i]));

mkdirSync(args.out, { recursive: true });
const saved = await saveAdapter(lora, join(args.out, 'adapter'));
const adapterBytes = saved.configBytes + saved.weightsBytes;
const basePart = model.namedParameters().filter(([n]) => !n.includes('lora_'));
const baseParams = basePart.reduce((s, [, p]) => s + p.size, 0);
const fullCheckpointBytes = (
  await serializeSafetensors(await toHost(Object.fromEntries(basePart)), { format: 'pt' })
).byteLength;
const optimizerStateBytes = trainer.optimizer.stateBytes();
const fullOptimizerStateBytes = 2 * 4 * baseParams; // AdamW: two float32 moments per parameter

const svgPath = join(args.out, 'loss.svg');
writeFileSync(
  svgPath,
  lr.lineChartSvg(
    [
      { name: 'train loss (LoRA)', points: trainer.losses },
      { name: 'test loss (evaluations)', points: evaluations, markers: true },
    ],
    {
      title: 'LoRA fine-tuning on E2E (char-level GPT-2)',
      xLabel: 'step',
      yLabel: 'cross-entropy (nats/char)',
    },
  ),
);

const kib = (n: number): string => `${(n / 1024).toFixed(1)} KiB`;
const pct = (a: number, b: number): string => `${((100 * a) / b).toFixed(2)}%`;
const seconds = (performance.now() - t0) / 1000;
const summary = {
  device,
  quick,
  steps: settings.steps,
  trainableParams: report.trainable,
  totalParams: report.total,
  optimizerStateBytes,
  fullOptimizerStateBytes,
  adapterBytes,
  fullCheckpointBytes,
  maxMergeDiff,
  testLossBefore: lossBefore,
  testLossAfter: lossAfter,
  trainSeconds,
  tokensPerSecond: (settings.steps * settings.batchSize * settings.blockSize) / trainSeconds,
  seconds,
  samples: prompts.map((p, i) => ({ mr: p.mr, before: before[i], after: after[i], reference: p.refs[0] })),
  lossSvg: svgPath,
  evaluations,
};
writeFileSync(join(args.out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);

console.log(`
4. Summary (${seconds.toFixed(0)} s in all, ${trainSeconds.toFixed(0)} s training at ${summary.tokensPerSecond.toFixed(0)} tokens/s on ${device})
   trainable parameters   ${report.trainable.toLocaleString('en-US')} of ${report.total.toLocaleString('en-US')} (${pct(report.trainable, report.total)})
   optimizer state        ${kib(optimizerStateBytes)} with LoRA vs ${kib(fullOptimizerStateBytes)} for full fine-tuning (${pct(optimizerStateBytes, fullOptimizerStateBytes)})
   checkpoint             ${kib(adapterBytes)} adapter (${saved.dir}) vs ${kib(fullCheckpointBytes)} full model (${pct(adapterBytes, fullCheckpointBytes)})
   merged vs unmerged     max |Δ logit| = ${maxMergeDiff.toExponential(2)} (W + (α/r)·B·A: no extra inference cost)
   test loss (E2E refs)   ${lossBefore.toFixed(3)} → ${lossAfter.toFixed(3)} nats/char
   loss curve             ${svgPath}
`);
for (const s of summary.samples) {
  console.log(
    `   ${s.mr}\n     before: ${JSON.stringify(s.before)}\n     after:  ${JSON.stringify(s.after)}\n     human:  ${JSON.stringify(s.reference)}\n`,
  );
}
