/**
 * The main demo: LoRA fine-tuning of a small pre-trained language model, end to end, in a couple
 * of minutes on a laptop CPU.
 *
 *   1. loads a 5.8M-parameter Llama (byte-level BPE, 4096 tokens) pre-trained by our own engine on
 *      general English, Tiny Shakespeare and the Brown Corpus (shipped in
 *      examples/checkpoints/llama-shakespeare-brown, made by examples/pretrain-llama.ts; the older
 *      character-level GPT-2 of examples/pretrain-shakespeare.ts loads with --checkpoint);
 *   2. LoRA-fine-tunes it on the E2E NLG restaurant data-to-text task (the LoRA paper's Table 3
 *      task): only A and B of every projection train, everything else is frozen;
 *   3. ends with what LoRA buys: trainable parameters, optimizer state and checkpoint size against
 *      full fine-tuning, merged = unmerged outputs, BLEU-4 on 50 test meaning representations
 *      before/after, generations, a loss-curve SVG.
 *
 * Run: pnpm demo [--quick] [--device auto|cpu|webgpu] [--steps N] [--out DIR] [--eager] (pnpm demo --help)
 * (LOWRANK_QUICK=1 is --quick: a shortened run for CI.) No download: data and checkpoint ship in the repo.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyLora, trainableParameters } from '@lowrank/lora';
import { saveAdapter } from '@lowrank/lora/node';
import { AutoModelForCausalLM, loadTokenizer } from '@lowrank/models/node';
import { serializeSafetensors, toHost } from '@lowrank/nn';
import { SingleBar } from 'cli-progress';
import * as lr from 'lowrank';
import { cliFlags } from './args.js';
import { greedyByLength } from './e2e/batched-greedy.js';
import { type BleuScore, bleuTokens, corpusBleu } from './e2e/bleu.js';

const args = cliFlags(
  'demo',
  {
    quick: {
      type: 'boolean',
      help: 'a shortened run (10 steps; LOWRANK_QUICK=1 does the same)',
      default: process.env.LOWRANK_QUICK === '1',
    },
    device: { help: 'where to run', choices: ['auto', 'cpu', 'webgpu'], default: 'auto' },
    steps: {
      help: 'LoRA optimizer steps (default: 50 for the Llama, 100 for a GPT-2; 10 with --quick)',
      positiveInt: true,
    },
    lr: { help: 'peak learning rate of the LoRA run (default: 1e-2)', positive: true },
    out: { help: 'output directory (adapter, loss.svg, summary.json)', default: 'out/demo' },
    checkpoint: {
      help: 'base model directory (default: the shipped Llama, examples/checkpoints/llama-shakespeare-brown; examples/checkpoints/shakespeare-char is the older character-level GPT-2)',
    },
    eager: { type: 'boolean', help: 'run every step eagerly (default: compiled steps, lr.compile)' },
  },
  'Usage: pnpm demo [options]\n\nLoRA fine-tuning of a small pre-trained language model on the E2E NLG task, end to end.',
) as {
  quick: boolean;
  device: string;
  steps?: string;
  lr?: string;
  out: string;
  checkpoint?: string;
  eager?: boolean;
};
const quick = args.quick === true;
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
const ckpt = args.checkpoint ?? here('./checkpoints/llama-shakespeare-brown');
const model = await AutoModelForCausalLM.fromPretrained(ckpt, { device });
const tok = loadTokenizer(ckpt, model.config.vocab_size);
const pretrain = JSON.parse(readFileSync(join(ckpt, 'training.json'), 'utf8')) as {
  steps: number;
  savedStep?: number;
  valLoss: number | { shakespeare: number; brown: number };
};
const isLlama = model instanceof lr.LlamaForCausalLM;
// a BPE token is ≈4.5 characters of E2E text, so the Llama sees ≈4.5× the text per step of the
// character model; a step costs ≈1.4 s on the 2-core machine when it is quiet, hence 50 (≈70 s)
const settings = {
  steps: args.steps ? Number(args.steps) : quick ? 10 : isLlama ? 50 : 100,
  batchSize: 8,
  blockSize: 128,
  lr: args.lr ? Number(args.lr) : 1e-2,
  r: 8,
  loraAlpha: 16,
  evalBatches: quick ? 1 : isLlama ? 2 : 4,
  genTokens: quick ? 24 : isLlama ? 64 : 120,
  bleuMrs: quick ? 4 : 50,
};
const unit = isLlama ? 'token' : 'char';
if (model instanceof lr.LlamaForCausalLM) {
  const c = model.config;
  const v = pretrain.valLoss as { shakespeare: number; brown: number };
  console.log(
    `1. Llama (byte-level BPE, vocab ${c.vocab_size}, ${c.num_hidden_layers} layers, width ${c.hidden_size}, ${c.num_attention_heads} heads / ${c.num_key_value_heads} kv, SwiGLU ${c.intermediate_size}, context ${c.max_position_embeddings}),` +
      ` ${model.numParameters().toLocaleString('en-US')} parameters,\n   pre-trained by lowrank on Tiny Shakespeare + the Brown Corpus (step ${pretrain.savedStep ?? pretrain.steps} of ${pretrain.steps}; val loss ${v.shakespeare.toFixed(3)} / ${v.brown.toFixed(3)} nats/token).`,
  );
} else {
  const c = model.config;
  console.log(
    `1. GPT-2 (char-level, vocab ${c.vocab_size}, ${c.n_layer} layers, width ${c.n_embd}, ${c.n_head} heads, context ${c.n_positions}),` +
      ` ${model.numParameters().toLocaleString('en-US')} parameters,\n   pre-trained on Tiny Shakespeare for ${pretrain.steps} steps (val loss ${(pretrain.valLoss as number).toFixed(3)}).`,
  );
}

// ---- 2. E2E data -------------------------------------------------------------------------------
const e2e = (f: string): lr.E2EExample[] => lr.parseE2E(readFileSync(here(`../data/e2e/${f}`), 'utf8'));
const trainSet = e2e('valid.txt'); // the official train split is not shipped: train on dev, test on test
const testSet = e2e('test.txt');
// `mr||ref\n` lines as one stream; the loss is on the reference text only (mask), as in the paper
const encode = (s: string): number[] => tok.encode(s);
const train = lr.e2eStream(trainSet, encode);
const test = lr.e2eStream(testSet, encode);
const bleuSet = lr.groupByMr(testSet).slice(0, settings.bleuMrs);
const prompts = bleuSet.slice(0, quick ? 1 : 2);
console.log(
  `2. E2E NLG (restaurant data-to-text): ${trainSet.length} training lines (${train.tokens.length.toLocaleString('en-US')} ${unit}s), ${testSet.length} test lines.`,
);

// a reply ends at its newline: every token whose text holds one (BPE merges '\n' with other
// whitespace; the character model's '\n' is its eos)
const stopIds = new Set<number>();
for (let id = 0; id < tok.vocabSize; id++) if (tok.decode([id]).includes('\n')) stopIds.add(id);
if (tok.eosTokenId !== null) stopIds.add(tok.eosTokenId); // the Llama's <|endoftext|> ends a text too
const promptIds = bleuSet.map((g) => tok.encode(lr.e2ePrompt(g.mr)));
const longest = Math.max(...promptIds.map((p) => p.length));
// BLEU needs whole replies: the character model's 128 positions do not hold an MR and its reply
const bleuFits = longest + settings.genTokens <= model.contextLength;

/** Greedy replies to the BLEU set's MRs (batched by prompt length), their BLEU, and the seconds taken. */
async function replies(): Promise<{ texts: string[]; score: BleuScore | null; seconds: number }> {
  const g0 = performance.now();
  if (!bleuFits) {
    const texts = await Promise.all(prompts.map(async (p) => sample(p.mr)));
    return { texts, score: null, seconds: (performance.now() - g0) / 1000 };
  }
  // no 4-gram twice in a reply (the LoRA paper decodes E2E with no_repeat_ngram_size 4)
  const outs = await greedyByLength(model, promptIds, {
    maxNewTokens: settings.genTokens,
    stopIds,
    noRepeatNgram: 4,
  });
  const texts = outs.map((ids) => tok.decode(ids).trim());
  const score = corpusBleu(
    texts.map(bleuTokens),
    bleuSet.map((g) => g.refs.map(bleuTokens)),
  );
  return { texts, score, seconds: (performance.now() - g0) / 1000 };
}

async function sample(mr: string): Promise<string> {
  const prompt = tok.encode(lr.e2ePrompt(mr));
  const r = await lr.generate(model, prompt, {
    maxNewTokens: settings.genTokens,
    temperature: 0.7,
    topK: 10,
    seed: 0,
    eosTokenId: [...stopIds],
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
const before = await replies();

// ---- 3. LoRA ---------------------------------------------------------------------------------------
// every projection of every block: attention (q, k, v, out) and the MLP
const targetModules = isLlama
  ? ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
  : ['c_attn', 'c_proj', 'c_fc'];
const lora = applyLora(model, { r: settings.r, loraAlpha: settings.loraAlpha, targetModules, seed: 0 });
const report = trainableParameters(model);
console.log(
  `3. LoRA r=${settings.r}, alpha=${settings.loraAlpha} on ${targetModules.join(', ')}: ${report}\n`,
);
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
const cpuStart = process.cpuUsage();
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
const trainCpu = process.cpuUsage(cpuStart);
// CPU time of the whole loop (evaluations included) over its wall time: the cores this process got
const fineTuneWall = (performance.now() - trainStart) / 1000;
const fineTuneCpuSeconds = (trainCpu.user + trainCpu.system) / 1e6;

const lossAfter = evaluations[evaluations.length - 1][1];
const after = await replies();

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
      title: `LoRA fine-tuning on E2E (${isLlama ? '5.8M Llama, BPE' : 'char-level GPT-2'})`,
      xLabel: 'step',
      yLabel: `cross-entropy (nats/${unit})`,
    },
  ),
);

function bleuLine(): string {
  if (!summary.bleu)
    return `BLEU-4                 not measured: prompt + reply (${longest} + ${settings.genTokens} ${unit}s) exceed the model's context of ${model.contextLength}`;
  const b = summary.bleu;
  return `BLEU-4 (${b.mrs} test MRs)  ${(100 * b.before).toFixed(1)} → ${(100 * b.after).toFixed(1)} (greedy, no repeated 4-gram; corpus BLEU, multi-reference; ${b.seconds.toFixed(0)} s generating)`;
}
const kib = (n: number): string => `${(n / 1024).toFixed(1)} KiB`;
const pct = (a: number, b: number): string => `${((100 * a) / b).toFixed(2)}%`;
const seconds = (performance.now() - t0) / 1000;
const summary = {
  device,
  quick,
  checkpoint: ckpt,
  modelType: isLlama ? 'llama' : 'gpt2',
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
  fineTuneSeconds: fineTuneWall,
  fineTuneCpuSeconds,
  tokensPerSecond: (settings.steps * settings.batchSize * settings.blockSize) / trainSeconds,
  seconds,
  bleu: before.score &&
    after.score && {
      mrs: bleuSet.length,
      before: before.score.bleu,
      after: after.score.bleu,
      detailBefore: before.score,
      detailAfter: after.score,
      seconds: before.seconds + after.seconds,
    },
  samples: prompts.map((p, i) => ({
    mr: p.mr,
    before: before.texts[i],
    after: after.texts[i],
    reference: p.refs[0],
  })),
  lossSvg: svgPath,
  evaluations,
};
writeFileSync(join(args.out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);

console.log(`
4. Summary (${seconds.toFixed(0)} s in all; fine-tuning ${fineTuneWall.toFixed(0)} s wall, ${fineTuneCpuSeconds.toFixed(0)} s CPU, of which ${trainSeconds.toFixed(0)} s training at ${summary.tokensPerSecond.toFixed(0)} tokens/s on ${device})
   trainable parameters   ${report.trainable.toLocaleString('en-US')} of ${report.total.toLocaleString('en-US')} (${pct(report.trainable, report.total)})
   optimizer state        ${kib(optimizerStateBytes)} with LoRA vs ${kib(fullOptimizerStateBytes)} for full fine-tuning (${pct(optimizerStateBytes, fullOptimizerStateBytes)})
   checkpoint             ${kib(adapterBytes)} adapter (${saved.dir}) vs ${kib(fullCheckpointBytes)} full model (${pct(adapterBytes, fullCheckpointBytes)})
   merged vs unmerged     max |Δ logit| = ${maxMergeDiff.toExponential(2)} (W + (α/r)·B·A: no extra inference cost)
   test loss (E2E refs)   ${lossBefore.toFixed(3)} → ${lossAfter.toFixed(3)} nats/${unit}
   ${bleuLine()}
   loss curve             ${svgPath}
`);
for (const s of summary.samples) {
  console.log(
    `   ${s.mr}\n     before: ${JSON.stringify(s.before)}\n     after:  ${JSON.stringify(s.after)}\n     human:  ${JSON.stringify(s.reference)}\n`,
  );
}
