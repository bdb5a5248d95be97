/**
 * The paper-style experiment (LoRA paper §5.3 / Table 3 task, Table 4 layout, Figure 2 plot) at toy
 * scale, entirely on lowrank:
 *
 *   1. the base model: a character-level GPT-2 pre-trained on Tiny Shakespeare by this engine.
 *      The shipped examples/checkpoints/shakespeare-char has n_positions = 128, too short for E2E
 *      (prompts average 144 characters, prompt + reference 286), so the full run pre-trains a
 *      slightly bigger one (n_positions 512, n_embd 128, 4 layers, the shipped tokenizer) first,
 *      in the same process, with the project's `LMTrainer`; `--base DIR` uses a saved one instead.
 *   2. fine-tunes it on E2E (data/e2e/valid.txt) with each method: full fine-tuning, BitFit
 *      (biases only), LoRA r ∈ {1, 2, 4, 8, 64} on {q, v} and on {q, k, v, o} (q, k, v are slices
 *      of GPT-2's fused c_attn: one rank-r pair per slice, as loralib's MergedLinear);
 *   3. decodes a fixed subset of test MRs greedily (data/e2e/test.txt) and writes the texts with
 *      all references of each MR; `score.py` computes BLEU (sacrebleu) and ROUGE-L.
 *
 * Every configuration sees the same batches (same seed) for the same number of steps.
 *
 *   XDG_RUNTIME_DIR=/tmp node --conditions=source --import tsx experiments/e2e/run.ts --quick --device cpu --out out/e2e-quick
 *   bash .gpu/run.sh run --out $OUT                                  (the H100, see README.md)
 */
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as lr from '../../packages/lowrank/src/index.js';
import { loadTokenizer } from '../../packages/models/src/node.js';
import {
  AdamW,
  clipGradNorm,
  LambdaLR,
  optim,
  serializeSafetensors,
  toHost,
} from '../../packages/nn/src/index.js';
import { greedyBatch } from './batched-generate.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    device: { type: 'string', default: 'webgpu' },
    out: { type: 'string', default: 'out/e2e' },
    data: { type: 'string', default: 'data' },
    base: { type: 'string' }, // a saved base model directory (skips pre-training)
    init: { type: 'string' }, // pre-training continues from this saved model (weights only)
    'pretrain-batch': { type: 'string' },
    'pretrain-steps': { type: 'string' },
    'pretrain-seconds': { type: 'string' },
    'ft-steps': { type: 'string' },
    'ft-seconds': { type: 'string' },
    'min-ft-steps': { type: 'string' }, // budget for all fine-tuning + decoding (shrinks ft-steps)
    batch: { type: 'string' },
    'eval-mrs': { type: 'string' },
    'max-new': { type: 'string' },
    only: { type: 'string' }, // comma-separated config names (debugging)
    deadline: { type: 'string' }, // seconds after start: configurations that would end later are skipped
    sensitivity: { type: 'boolean', default: false }, // extra learning-rate rows after the main grid
  },
});
const quick = args.quick === true;
const num = (v: string | undefined, quickValue: number, fullValue: number): number =>
  v !== undefined ? Number(v) : quick ? quickValue : fullValue;

const S = {
  // pre-training (Tiny Shakespeare)
  pretrainSteps: num(args['pretrain-steps'], 4, 2000),
  pretrainSeconds: num(args['pretrain-seconds'], 60, 110),
  pretrainBatch: num(args['pretrain-batch'], 4, 128),
  pretrainLr: 2e-3,
  model: quick
    ? { n_positions: 512, n_embd: 32, n_layer: 2, n_head: 2 }
    : { n_positions: 512, n_embd: 128, n_layer: 4, n_head: 4 },
  // fine-tuning (E2E)
  ftSteps: num(args['ft-steps'], 4, 600),
  ftSeconds: num(args['ft-seconds'], 1e9, 330),
  minFtSteps: num(args['min-ft-steps'], 1, 120),
  batch: num(args.batch, 4, 128),
  warmupFrac: 0.1,
  weightDecay: 0.01,
  gradClip: 0, // off: on this engine every extra op costs step time (the steps are dispatch-bound)
  lr: { full: 1e-3, bitfit: 1e-2, lora: 5e-3 },
  loraAlpha: 32, // fixed across r, as the paper (α = 32 for GPT-2 on E2E)
  loraDropout: 0,
  ranks: [1, 2, 4, 8, 64],
  // evaluation
  evalMrs: num(args['eval-mrs'], 3, 200),
  maxNew: num(args['max-new'], 24, 220),
  lossRefs: quick ? 8 : 200, // teacher-forced test loss on one reference of each evaluated MR
  seed: 0,
  deadline: num(args.deadline, 1e9, 500),
};

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const t0 = performance.now();
const elapsed = (): number => (performance.now() - t0) / 1000;
const { device, description } = await lr.init({ backend: args.device as lr.Device });
const gpu = device === 'webgpu';
const outDir = args.out ?? 'out/e2e';
mkdirSync(outDir, { recursive: true });
const log = (s: string): void => {
  const line = `[${elapsed().toFixed(1)}s] ${s}`;
  console.log(line);
  appendFileSync(join(outDir, 'run.log'), `${line}\n`);
};
log(`device ${device}: ${description}${quick ? ' (quick)' : ''}`);
const readData = (p: string): string => readFileSync(join(args.data ?? 'data', p), 'utf8');

// ---- tokenizer: the shipped checkpoint's character vocabulary (Shakespeare + E2E characters) ----
const tok = loadTokenizer('examples/checkpoints/shakespeare-char', 78);
const eos = tok.eosTokenId;
if (eos === null) throw new Error('the shipped tokenizer has no end-of-text character');

async function sync(): Promise<void> {
  await lr.getBackend(device).flush?.();
}
const peakReset = (): void => lr.webgpuProfiler()?.resetPeakBytes();
const peakBytes = (): number => lr.webgpuStats()?.peakBytesInUse ?? Number.NaN;
const liveBytes = (): number => lr.webgpuStats()?.bytesInUse ?? lr.memory().numBytes;

// ---- 1. the base model ---------------------------------------------------------------------------
interface BaseInfo {
  source: string;
  config: Record<string, unknown>;
  parameters: number;
  pretrainSteps?: number;
  pretrainSeconds?: number;
  pretrainMsPerStep?: number;
  pretrainValLoss?: number;
  tokensPerStep?: number;
}
let baseBytes: Uint8Array;
let baseConfig: Record<string, unknown>;
let baseInfo: BaseInfo;
if (args.base) {
  baseConfig = JSON.parse(readFileSync(join(args.base, 'config.json'), 'utf8')) as Record<string, unknown>;
  baseBytes = new Uint8Array(readFileSync(join(args.base, 'model.safetensors')));
  const m = lr.gpt2FromSafetensors(baseConfig, baseBytes);
  baseInfo = { source: args.base, config: baseConfig, parameters: m.numParameters() };
  m.dispose();
} else {
  const text = readData('tinyshakespeare/input.txt');
  const { train, val } = lr.trainValSplit(Int32Array.from(tok.encode(text)), 0.1);
  const config = lr.gpt2Config({
    vocab_size: 78,
    ...S.model,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    bos_token_id: null,
    eos_token_id: null,
  });
  const model = args.init
    ? lr.gpt2FromSafetensors(
        JSON.parse(readFileSync(join(args.init, 'config.json'), 'utf8')) as Record<string, unknown>,
        new Uint8Array(readFileSync(join(args.init, 'model.safetensors'))),
      )
    : new lr.GPT2LMHeadModel(config, { seed: 0 });
  if (args.init && model.config.n_positions !== config.n_positions)
    throw new Error('--init: n_positions differs');
  await model.to(device);
  const opts = (steps: number): lr.TrainerOptions => ({
    steps,
    batchSize: S.pretrainBatch,
    blockSize: config.n_positions,
    lr: S.pretrainLr,
    warmupSteps: Math.min(50, steps),
    minLrRatio: 0.1,
    weightDecay: 0.1,
    seed: args.init ? 1 : 0, // new batches when continuing
  });
  // the first steps measure the speed; the run's length follows from the time budget
  const probe = new lr.LMTrainer(model, model.parameters(), opts(S.pretrainSteps));
  const probeSteps = Math.min(10, S.pretrainSteps);
  const tp = performance.now();
  for (let s = 0; s < probeSteps; s++) await probe.trainStep(train);
  const msPerStep = (performance.now() - tp) / probeSteps;
  const steps = Math.max(
    probeSteps,
    Math.min(S.pretrainSteps, Math.floor((S.pretrainSeconds * 1000) / msPerStep)),
  );
  const trainer = new lr.LMTrainer(model, model.parameters(), opts(steps));
  trainer.loadState(probe.state());
  log(
    `pre-training ${model.numParameters()} parameters: ${steps} steps (probe ${msPerStep.toFixed(1)} ms/step)`,
  );
  const tt = performance.now();
  while (trainer.step < steps) {
    const loss = await trainer.trainStep(train);
    if (trainer.step % 100 === 0 || trainer.step === steps)
      log(`pretrain step ${trainer.step} loss ${loss.toFixed(3)}`);
  }
  const seconds = (performance.now() - tt) / 1000 + (probeSteps * msPerStep) / 1000;
  const valLoss = await trainer.evaluate(val, quick ? 1 : 8);
  baseBytes = await lr.gpt2ToSafetensors(model);
  baseConfig = JSON.parse(lr.gpt2ConfigJSON(model)) as Record<string, unknown>;
  writeFileSync(join(outDir, 'base-model.safetensors'), baseBytes);
  writeFileSync(join(outDir, 'base-config.json'), lr.gpt2ConfigJSON(model));
  baseInfo = {
    source: `${args.init ? `${args.init} (${String(readFileSync(join(args.init, 'source.txt'), 'utf8')).trim()}), then ` : ''}pre-trained in this run on data/tinyshakespeare/input.txt (first 90%), ${steps} steps × ${S.pretrainBatch} × ${config.n_positions} characters`,
    config: baseConfig,
    parameters: model.numParameters(),
    pretrainSteps: steps,
    pretrainSeconds: seconds,
    pretrainMsPerStep: (seconds * 1000) / steps,
    pretrainValLoss: valLoss,
    tokensPerStep: S.pretrainBatch * config.n_positions,
  };
  log(`pre-trained: val loss ${valLoss.toFixed(3)} in ${seconds.toFixed(1)} s`);
  trainer.optimizer.dispose();
  probe.optimizer.dispose();
  model.dispose();
}
const nPos = Number(baseConfig.n_positions);

// ---- 2. E2E data ---------------------------------------------------------------------------------
interface Example {
  ids: number[];
  /** Index of the first reference token (everything before is the prompt: label −100). */
  start: number;
}
const encodeExample = (e: lr.E2EExample): Example => {
  const prompt = tok.encode(lr.e2ePrompt(e.mr));
  const ids = [...prompt, ...tok.encode(`${e.ref}\n`)].slice(0, nPos);
  return { ids, start: prompt.length };
};
const trainSet = lr.parseE2E(readData('e2e/valid.txt')).map(encodeExample);
const testGroups = lr.groupByMr(lr.parseE2E(readData('e2e/test.txt')));
const nEval = Math.min(S.evalMrs, testGroups.length);
const evalGroups = Array.from(
  { length: nEval },
  (_, i) => testGroups[Math.floor((i * testGroups.length) / nEval)],
);
const evalPrompts = evalGroups.map((g) => tok.encode(lr.e2ePrompt(g.mr)));
const lossSet = evalGroups.slice(0, S.lossRefs).map((g) => encodeExample({ mr: g.mr, ref: g.refs[0] }));
log(
  `E2E: ${trainSet.length} training examples, evaluating ${nEval} of ${testGroups.length} test MRs (${evalGroups.reduce((a, g) => a + g.refs.length, 0)} references)`,
);

/** A padded batch: ids [B, T], labels −100 on prompts and padding; T a multiple of 32. */
function makeBatch(examples: readonly Example[]): { ids: lr.Tensor; labels: lr.Tensor } {
  const B = examples.length;
  const T = Math.min(nPos, Math.ceil(Math.max(...examples.map((e) => e.ids.length)) / 32) * 32);
  const ids = new Int32Array(B * T).fill(eos as number);
  const labels = new Int32Array(B * T).fill(-100);
  examples.forEach((e, b) => {
    e.ids.forEach((id, t) => {
      ids[b * T + t] = id;
      if (t >= e.start) labels[b * T + t] = id;
    });
  });
  return {
    ids: lr.fromTypedArray(ids, [B, T], { dtype: 'int32', device }),
    labels: lr.fromTypedArray(labels, [B, T], { dtype: 'int32', device }),
  };
}

/** Mean teacher-forced loss (nats per reference character) on `lossSet`. */
async function testLoss(model: lr.GPT2LMHeadModel): Promise<number> {
  model.eval();
  let total = 0;
  let count = 0;
  const bs = 50;
  for (let i = 0; i < lossSet.length; i += bs) {
    const chunk = lossSet.slice(i, i + bs);
    const n = chunk.reduce((a, e) => a + e.ids.length - e.start, 0);
    const loss = lr.noGrad(() =>
      lr.tidy(() => {
        const b = makeBatch(chunk);
        return model.forward(b.ids, { labels: b.labels }).loss!;
      }),
    );
    total += ((await loss.item()) as number) * n;
    count += n;
    loss.dispose();
  }
  return total / count;
}

// ---- 3. the methods ------------------------------------------------------------------------------
type Method = 'none' | 'full' | 'bitfit' | 'lora';
interface RunConfig {
  name: string;
  method: Method;
  label: string;
  r?: number;
  targets?: 'qv' | 'qkvo';
  /** Overrides the method's learning rate (the sensitivity rows). */
  lr?: number;
}
const lrOf = (c: RunConfig): number | undefined =>
  c.lr ??
  (c.method === 'full'
    ? S.lr.full
    : c.method === 'bitfit'
      ? S.lr.bitfit
      : c.method === 'lora'
        ? S.lr.lora
        : undefined);
const configs: RunConfig[] = [
  { name: 'full', method: 'full', label: 'FT (full fine-tuning)' },
  { name: 'bitfit', method: 'bitfit', label: 'BitFit (biases only)' },
  ...(['qv', 'qkvo'] as const).flatMap((targets) =>
    S.ranks.map(
      (r): RunConfig => ({
        name: `lora-${targets}-r${r}`,
        method: 'lora',
        label: `LoRA ${targets === 'qv' ? 'W_q, W_v' : 'W_q, W_k, W_v, W_o'} r=${r}`,
        r,
        targets,
      }),
    ),
  ),
  { name: 'base', method: 'none', label: 'base model, not fine-tuned' },
  // learning-rate sensitivity (not tuned on the test set: reported beside the grid)
  ...(args.sensitivity
    ? ([
        { name: 'full-lr3e-4', method: 'full', label: 'FT, lr 3e-4', lr: 3e-4 },
        {
          name: 'lora-qv-r4-lr1e-3',
          method: 'lora',
          label: 'LoRA W_q, W_v r=4, lr 1e-3',
          r: 4,
          targets: 'qv',
          lr: 1e-3,
        },
        {
          name: 'lora-qv-r4-lr1e-2',
          method: 'lora',
          label: 'LoRA W_q, W_v r=4, lr 1e-2',
          r: 4,
          targets: 'qv',
          lr: 1e-2,
        },
      ] satisfies RunConfig[])
    : []),
];
const only = args.only?.split(',');
const selected = only ? configs.filter((c) => only.includes(c.name)) : configs;

interface Prepared {
  model: lr.GPT2LMHeadModel;
  params: lr.Tensor[];
  lora: lr.LoraModel | null;
}
async function prepare(c: RunConfig): Promise<Prepared> {
  const model = lr.gpt2FromSafetensors(baseConfig, baseBytes);
  await model.to(device);
  if (c.method === 'full' || c.method === 'none') return { model, params: model.parameters(), lora: null };
  if (c.method === 'bitfit') {
    model.requiresGrad_(false);
    for (const [name, p] of model.namedParameters()) if (name.endsWith('.bias')) p.requiresGrad_(true);
    return { model, params: model.parameters().filter((p) => p.requiresGrad), lora: null };
  }
  const lora = lr.applyLora(model, {
    r: c.r!,
    loraAlpha: S.loraAlpha,
    loraDropout: S.loraDropout,
    targetModules: c.targets === 'qv' ? ['attn.c_attn'] : ['attn.c_attn', 'attn.c_proj'],
    fusedSlices: { c_attn: c.targets === 'qv' ? [true, false, true] : [true, true, true] },
    seed: S.seed,
  });
  return { model, params: lora.trainableParameters(), lora };
}

/** Bytes of what this method has to store: the adapter, the biases, or the whole model. */
async function checkpointBytes(c: RunConfig, p: Prepared): Promise<number> {
  if (p.lora) return (await lr.serializeAdapter(p.lora)).safetensors.length;
  if (c.method === 'bitfit') {
    const biases = new Map(p.model.namedParameters().filter(([n]) => n.endsWith('.bias')));
    return serializeSafetensors(await toHost(biases), { format: 'pt' }).length;
  }
  return (await lr.gpt2ToSafetensors(p.model)).length;
}

/** Batch order shared by every configuration. */
function batchOrder(steps: number): number[][] {
  const g = new lr.Generator(S.seed + 1);
  return Array.from({ length: steps }, () =>
    Array.from({ length: S.batch }, () => g.nextInt(0, trainSet.length)),
  );
}

interface TrainResult {
  steps: number;
  msPerStep: number;
  peakBytes: number;
  losses: [number, number][];
  seconds: number;
}
async function train(c: RunConfig, p: Prepared, steps: number): Promise<TrainResult> {
  const { model, params } = p;
  const lrPeak = lrOf(c) ?? 0;
  const decay = params.filter((t) => t.rank >= 2);
  const noDecay = params.filter((t) => t.rank < 2);
  const opt = new AdamW(
    [
      { params: decay, weightDecay: S.weightDecay },
      { params: noDecay, weightDecay: 0 },
    ].filter((g) => g.params.length > 0),
    { lr: lrPeak, betas: [0.9, 0.999] },
  );
  const sched = new LambdaLR(
    opt,
    optim.warmupLinearLambda({ warmupSteps: Math.ceil(steps * S.warmupFrac), totalSteps: steps }),
  );
  const order = batchOrder(steps);
  const losses: [number, number][] = [];
  const warm = Math.min(5, steps - 1);
  let tStart = performance.now();
  const ts = performance.now();
  let cpuPeak = 0;
  model.train();
  for (let s = 1; s <= steps; s++) {
    const loss = lr.tidy(() => {
      const b = makeBatch(order[s - 1].map((i) => trainSet[i]));
      const l = model.forward(b.ids, { labels: b.labels }).loss!;
      l.backward();
      return l;
    });
    if (!gpu) cpuPeak = Math.max(cpuPeak, lr.memory().numBytes);
    if (S.gradClip > 0) clipGradNorm(params, S.gradClip).dispose();
    opt.step();
    opt.zeroGrad();
    sched.step();
    if (s % 10 === 0 || s === steps || s === warm) {
      const v = (await loss.item()) as number;
      losses.push([s, v]);
      if (!Number.isFinite(v)) log(`${c.name}: loss ${v} at step ${s}`);
      if (s === warm) tStart = performance.now();
    }
    loss.dispose();
  }
  await sync();
  const tEnd = performance.now();
  const peak = gpu ? peakBytes() : cpuPeak;
  opt.dispose();
  return {
    steps,
    msPerStep: (tEnd - tStart) / (steps - warm),
    peakBytes: peak,
    losses,
    seconds: (tEnd - ts) / 1000,
  };
}

// ---- 4. calibration: fine-tuning steps from the time budget --------------------------------------
let ftSteps = S.ftSteps;
const calibration: Record<string, number> = {};
if (!quick && args['ft-steps'] === undefined) {
  const c = configs[0];
  const p = await prepare(c);
  const probe = await train(c, p, 12);
  await greedyBatch(p.model, evalPrompts, { maxNewTokens: 16, eosTokenId: -1 }); // compiles the pipelines
  const tg = performance.now();
  await greedyBatch(p.model, evalPrompts, { maxNewTokens: 16, eosTokenId: -1 });
  const genMsPerToken = (performance.now() - tg) / 16;
  p.model.dispose();
  const loraFactor = 1.3; // LoRA steps run a few more kernels than full fine-tuning's
  const genSeconds = (S.maxNew * genMsPerToken) / 1000 + 3;
  const perConfig = S.ftSeconds / selected.filter((x) => x.method !== 'none').length - genSeconds;
  ftSteps = Math.max(
    S.minFtSteps,
    Math.min(S.ftSteps, Math.floor((perConfig * 1000) / (probe.msPerStep * loraFactor))),
  );
  Object.assign(calibration, { fullMsPerStep: probe.msPerStep, genMsPerToken, genSeconds, ftSteps });
  log(
    `calibration: full FT ${probe.msPerStep.toFixed(1)} ms/step, decoding ${genMsPerToken.toFixed(1)} ms/token → ${ftSteps} steps per configuration`,
  );
}

// ---- 5. run every configuration ------------------------------------------------------------------
interface ConfigResult {
  name: string;
  label: string;
  method: Method;
  r?: number;
  targets?: string;
  lr?: number;
  trainableParams: number;
  totalParams: number;
  checkpointBytes: number;
  train?: TrainResult;
  peakBytes: number;
  baselineBytes: number;
  testLoss: number;
  decodeSeconds: number;
  decodeSteps: number;
  meanOutputChars: number;
  sample: { mr: string; output: string; ref: string };
}
const results: ConfigResult[] = [];
const genPath = join(outDir, 'generations.jsonl');
writeFileSync(genPath, '');
const writeResults = (): void =>
  writeFileSync(
    join(outDir, 'results.json'),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        device,
        adapter: description,
        quick,
        settings: { ...S, ftSteps },
        calibration,
        base: baseInfo,
        evalMrs: nEval,
        testMrs: testGroups.length,
        evalReferences: evalGroups.reduce((a, g) => a + g.refs.length, 0),
        trainExamples: trainSet.length,
        seconds: elapsed(),
        skipped,
        results,
      },
      null,
      1,
    )}\n`,
  );

const skipped: string[] = [];
let lastSeconds = 0;
for (const c of selected) {
  if (elapsed() + lastSeconds * 1.1 > S.deadline) {
    skipped.push(c.name);
    log(`${c.name}: skipped (would end after the ${S.deadline} s deadline)`);
    continue;
  }
  const tc = performance.now();
  await sync();
  const baselineBytes = liveBytes();
  peakReset();
  const p = await prepare(c);
  const trainable = c.method === 'none' ? 0 : p.params.reduce((a, t) => a + t.size, 0);
  const tr = c.method === 'none' ? undefined : await train(c, p, ftSteps);
  const tl = await testLoss(p.model);
  const tg = performance.now();
  const gen = await greedyBatch(p.model, evalPrompts, { maxNewTokens: S.maxNew, eosTokenId: eos });
  const decodeSeconds = (performance.now() - tg) / 1000;
  const outputs = gen.tokens.map((t) => tok.decode(t).trim());
  appendFileSync(
    genPath,
    outputs
      .map(
        (o, i) =>
          `${JSON.stringify({ config: c.name, i, mr: evalGroups[i].mr, output: o, refs: evalGroups[i].refs })}\n`,
      )
      .join(''),
  );
  const rec: ConfigResult = {
    name: c.name,
    label: c.label,
    method: c.method,
    r: c.r,
    targets: c.targets,
    lr:
      c.method === 'full'
        ? S.lr.full
        : c.method === 'bitfit'
          ? S.lr.bitfit
          : c.method === 'lora'
            ? S.lr.lora
            : undefined,
    trainableParams: trainable,
    totalParams: p.model.numParameters(),
    checkpointBytes: c.method === 'none' ? 0 : await checkpointBytes(c, p),
    train: tr,
    peakBytes: tr?.peakBytes ?? Number.NaN,
    baselineBytes,
    testLoss: tl,
    decodeSeconds,
    decodeSteps: gen.steps,
    meanOutputChars: outputs.reduce((a, o) => a + o.length, 0) / outputs.length,
    sample: { mr: evalGroups[0].mr, output: outputs[0], ref: evalGroups[0].refs[0] },
  };
  results.push(rec);
  p.lora?.unload();
  p.model.dispose();
  writeResults();
  lastSeconds = Math.max(lastSeconds, (performance.now() - tc) / 1000);
  log(
    `${c.name}: ${trainable} trainable, ${tr ? `${tr.msPerStep.toFixed(1)} ms/step, peak ${(rec.peakBytes / 2 ** 20).toFixed(1)} MiB, final loss ${tr.losses.at(-1)?.[1].toFixed(3)}, ` : ''}test loss ${tl.toFixed(3)}, decode ${decodeSeconds.toFixed(1)} s (${gen.steps} steps) | ${outputs[0].slice(0, 100)}`,
  );
}

// ---- quick mode: the batched decoder agrees with @lowrank/models' generate -----------------------
if (quick) {
  const model = lr.gpt2FromSafetensors(baseConfig, baseBytes);
  await model.to(device);
  const prompts = evalPrompts.slice(0, 3);
  const batched = await greedyBatch(model, prompts, { maxNewTokens: 12, eosTokenId: eos });
  for (let i = 0; i < prompts.length; i++) {
    const one = await lr.generate(model, prompts[i], { maxNewTokens: 12, greedy: true, eosTokenId: eos });
    const single = one.tokens.filter((t, j) => !(t === eos && j === one.tokens.length - 1));
    if (single.join(',') !== batched.tokens[i].join(',')) {
      throw new Error(`greedyBatch differs from generate on prompt ${i}: ${batched.tokens[i]} vs ${single}`);
    }
  }
  log(`check: batched greedy decoding = generate() on ${prompts.length} prompts of different lengths`);
  model.dispose();
}
writeResults();
log(`done in ${elapsed().toFixed(1)} s; live tensors ${lr.memory().numTensors}`);
