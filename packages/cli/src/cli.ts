#!/usr/bin/env node
/**
 * `lowrank` — train (full or LoRA), generate, chat with, merge and inspect GPT-2 and Llama-family
 * checkpoints from a shell.
 *
 *   lowrank train --data data/tinyshakespeare/input.txt --out runs/char --steps 200
 *   lowrank train --init runs/char --data data/e2e/valid.txt --format e2e --lora --r 8 --out runs/e2e
 *   lowrank generate --model runs/char --adapter runs/e2e --prompt "name : Alimentum||"
 *   lowrank chat --model HuggingFaceTB/SmolLM2-135M-Instruct --system "Be brief."   (one stdin line a turn)
 *   lowrank merge --model runs/char --adapter runs/e2e --out runs/merged
 *   lowrank inspect runs/e2e
 *   lowrank train --init runs/char --data data/e2e/valid.txt --format e2e --lora --quantize nf4 --out runs/qlora
 *   lowrank inspect runs/char --quantize nf4   (the footprint of an NF4 base)
 *
 * Errors (bad flags, missing files, a corrupt checkpoint) print their whole message and exit with
 * status 1.
 */
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { noGrad } from '@lowrank/autograd';
import { applyLora, type LoraModel, loadAdapterFromBytes, trainableParameters } from '@lowrank/lora';
import { saveAdapter } from '@lowrank/lora/node';
import {
  type AutoCausalLM,
  CharTokenizer,
  e2eStream,
  e2eText,
  GPT2LMHeadModel,
  generate,
  gpt2Config,
  HFTokenizer,
  isHFTokenizerJson,
  LMTrainer,
  type LoadDType,
  parseE2E,
  type Tokenizer,
  type TokenizerSpec,
  tokenizerFromSpec,
  trainValSplit,
} from '@lowrank/models';
import {
  AutoModelForCausalLM,
  loadTokenizer,
  modelDir,
  readBytes,
  readJSON,
  savePretrained,
} from '@lowrank/models/node';
import { type ModelFootprint, modelFootprint, safetensorsEntries } from '@lowrank/nn';
import { loadCheckpoint, saveCheckpoint } from '@lowrank/nn/node';
import { type Device, init, type Tensor, tensor, tidy } from '@lowrank/tensor';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ChatError, runChat } from './chat.js';
import { checkTrainArgs, TRAIN_DEFAULTS, type TrainArgs } from './train-args.js';
import { TrainProgress } from './train-progress.js';

/** A failure the user caused: printed as one line, exit status 1. */
class CliError extends Error {}

const int =
  (min = 1) =>
  (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer ≥ ${min}.`);
    return n;
  };
const num =
  (min: number, max = Number.POSITIVE_INFINITY) =>
  (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new InvalidArgumentError(`expected a number in [${min}, ${max}].`);
    return n;
  };

function deviceOption(): Option {
  return new Option('--device <device>', 'where to run (auto: a hardware GPU, else the CPU)')
    .choices(['auto', 'cpu', 'webgpu'])
    .default('auto');
}

function dtypeOption(): Option {
  return new Option(
    '--dtype <dtype>',
    "the base's weights: float32, or kept in 16 bits (half the memory; decoded inside the kernels)",
  )
    .choices(['f32', 'f16', 'bf16'])
    .default('f32');
}

/** The storage `--quantize` gives the frozen base (QLoRA: NF4 or int8 codes, blocks of 64). */
type QuantizeFlag = 'nf4' | 'int8';

function quantizeOption(what: string): Option {
  return new Option(
    '--quantize <format>',
    `${what}: NF4 (4.5 bits a weight, 0.14x float32) or int8 (0.27x) codes in blocks of 64, decoded inside the kernels; lm_head and embeddings stay float32`,
  ).choices(['nf4', 'int8']);
}

async function useDevice(wanted: string): Promise<Device> {
  try {
    const { device } = await init({ backend: wanted as Device | 'auto', onNotice: (m) => console.error(m) });
    return device;
  } catch (e) {
    throw new CliError(`cannot use device '${wanted}': ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// train

/** defaults < --config JSON < flags given on the command line. */
async function resolveTrainArgs(cmd: Command): Promise<TrainArgs> {
  const opts = cmd.opts<Record<string, unknown>>();
  const merged: Record<string, unknown> = { ...TRAIN_DEFAULTS };
  const fromConfig = new Set<string>();
  const configPath = opts.config as string | undefined;
  if (configPath) {
    const json = readJSON(configPath, 'train config');
    const errors = checkTrainArgs(json, `train config ${configPath}`, false);
    if (errors.length > 0) throw new CliError(errors.join('\n'));
    for (const [k, v] of Object.entries(json)) {
      merged[k] = v;
      fromConfig.add(k);
    }
  }
  for (const [k, v] of Object.entries(opts)) {
    if (k === 'config' || k === 'resume' || k === 'stopAfter') continue;
    if (cmd.getOptionValueSource(k) === 'cli' || merged[k] === undefined) merged[k] = v;
  }
  for (const k of ['data', 'out'] as const) {
    if (typeof merged[k] !== 'string')
      throw new CliError(`train: --${k} is required (or '${k}' in --config)`);
  }
  // --model is the name users know from HF; --init is the original spelling
  if (typeof merged.model === 'string') merged.init ??= merged.model;
  // LoRA's default targets: c_attn for GPT-2, q_proj/v_proj (the paper's choice) for Llama-family models
  if (
    typeof merged.init === 'string' &&
    cmd.getOptionValueSource('targets') !== 'cli' &&
    !fromConfig.has('targets')
  ) {
    const dir = await modelFolder(merged.init);
    const type = (readJSON(join(dir, 'config.json'), 'model config').model_type ?? 'gpt2') as string;
    if (type !== 'gpt2') merged.targets = ['q_proj', 'v_proj'];
  }
  return merged as unknown as TrainArgs;
}

function readCorpus(a: TrainArgs): string {
  const text = new TextDecoder().decode(readBytes(a.data, 'training data'));
  if (a.format === 'text') return text;
  return parseE2E(text).map(e2eText).join('');
}

interface BuiltModel {
  model: AutoCausalLM;
  tokenizer: Tokenizer;
  /** lowrank's tokenizer spec, or null when the tokenizer is an HF one (its files are copied from `tokenizerDir`). */
  tokenizerSpec: TokenizerSpec | null;
  tokenizerDir: string | null;
  lora: LoraModel<AutoCausalLM> | null;
}

/**
 * The folder of `--model`: the directory itself, or a Hub id's snapshot (downloaded into the
 * Hugging Face cache, HF_HUB_CACHE or HF_HOME/hub, from HF_ENDPOINT or huggingface.co, or found there).
 */
async function modelFolder(dirOrHubId: string): Promise<string> {
  try {
    return await modelDir(dirOrHubId, {
      onProgress: (p) => {
        if (!p.cached && p.loaded === p.total)
          console.error(`downloaded ${dirOrHubId}: ${p.file} (${p.total} bytes)`);
      },
    });
  } catch (e) {
    throw new CliError((e as Error).message);
  }
}

async function loadModel(
  dir: string,
  device: Device,
  dtype: LoadDType = 'f32',
  quantize?: QuantizeFlag,
): Promise<AutoCausalLM> {
  try {
    // fromPretrained refuses a --dtype other than f32 next to --quantize (both choose the base's storage)
    return await AutoModelForCausalLM.fromPretrained(dir, {
      device,
      dtype,
      quantize: quantize ? { bits: quantize } : undefined,
    });
  } catch (e) {
    throw new CliError((e as Error).message);
  }
}

async function buildModel(a: TrainArgs, corpus: string, device: Device): Promise<BuiltModel> {
  let model: AutoCausalLM;
  let tokenizerSpec: TokenizerSpec | null;
  let tokenizer: Tokenizer;
  let tokenizerDir: string | null = null;
  if (a.init) {
    const dir = await modelFolder(a.init); // a Hub id's snapshot: model.nameOrPath stays the id
    if (a.quantize && !a.lora)
      throw new CliError(
        `train: --quantize ${a.quantize} stores a frozen base, which only --lora can fine-tune (a quantized weight has no gradient): add --lora`,
      );
    model = await loadModel(a.init, device, 'f32', a.quantize);
    if (a.quantize) console.log(`base ${a.quantize}: ${fmtFootprint(modelFootprint(model))}`);
    tokenizer = loadTokenizer(dir, model.config.vocab_size);
    const tokPath = join(dir, 'tokenizer.json');
    if (tokenizer instanceof HFTokenizer) {
      tokenizerSpec = null;
      tokenizerDir = dir;
    } else {
      tokenizerSpec = existsSync(tokPath)
        ? (readJSON(tokPath, 'tokenizer') as unknown as TokenizerSpec)
        : model.config.vocab_size === 256
          ? { type: 'byte' }
          : { type: 'gpt2' };
    }
  } else {
    if (a.lora) throw new CliError('train: --lora needs a base model to adapt (--init <model dir>)');
    if (a.quantize)
      throw new CliError(
        `train: --quantize ${a.quantize} quantizes a pretrained base: give it with --init <model dir> and --lora`,
      );
    const spec: TokenizerSpec =
      a.tokenizer === 'char' ? CharTokenizer.fromText(corpus).toJSON() : { type: a.tokenizer };
    tokenizerSpec = spec;
    tokenizer = tokenizerFromSpec(spec);
    const vocab = tokenizer.vocabSize;
    let config: ReturnType<typeof gpt2Config>;
    try {
      config = gpt2Config({
        vocab_size: vocab,
        n_positions: a.nPositions,
        n_embd: a.nEmbd,
        n_layer: a.nLayer,
        n_head: a.nHead,
        resid_pdrop: a.dropout,
        embd_pdrop: a.dropout,
        attn_pdrop: a.dropout,
        bos_token_id: null,
        eos_token_id: null,
      });
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    model = new GPT2LMHeadModel(config, { seed: a.seed });
    await model.to(device);
  }
  let lora: LoraModel<AutoCausalLM> | null = null;
  if (a.lora) {
    try {
      lora = applyLora(model, {
        r: a.r,
        loraAlpha: a.alpha,
        targetModules: a.targets,
        loraDropout: a.loraDropout,
        seed: a.seed,
      });
    } catch (e) {
      throw new CliError((e as Error).message);
    }
  }
  return { model, tokenizer, tokenizerSpec, tokenizerDir, lora };
}

async function train(cmd: Command): Promise<void> {
  const opts = cmd.opts<{ resume?: boolean; out?: string }>();
  let a: TrainArgs;
  const argsFile = (out: string): string => join(out, 'train_args.json');
  if (opts.resume) {
    if (!opts.out) throw new CliError('train --resume: --out <dir> of the run to resume is required');
    const saved = argsFile(opts.out);
    if (!existsSync(saved))
      throw new CliError(`train --resume: no run to resume in ${opts.out} (${saved} not found)`);
    const json = readJSON(saved, 'saved train args');
    const errors = checkTrainArgs(json, `train --resume: ${saved}`, true);
    if (errors.length > 0) throw new CliError(errors.join('\n'));
    a = { ...TRAIN_DEFAULTS, ...json } as TrainArgs;
    // the run lives where it is now: a copied or renamed run trains in its new directory
    a.out = opts.out;
    // a resumed run may be extended, moved to another device, and these flags may change; any
    // other flag would be ignored (the run's arguments are saved), so it is refused
    const changeable = ['steps', 'device', 'allowNonfinite', 'finalEval', 'compile'] as const;
    const fixed = cmd.options.filter((o) => {
      const k = o.attributeName();
      if (['resume', 'out', 'stopAfter', ...changeable].includes(k)) return false;
      return cmd.getOptionValueSource(k) === 'cli';
    });
    if (fixed.length > 0)
      throw new CliError(
        `train --resume: ${fixed.map((o) => o.long).join(', ')} cannot change when resuming (the run's arguments are in ${saved}); only --steps, --device, --allow-nonfinite, --no-final-eval and --no-compile can`,
      );
    for (const k of changeable)
      if (cmd.getOptionValueSource(k) === 'cli') Object.assign(a, { [k]: cmd.opts()[k] });
  } else {
    a = await resolveTrainArgs(cmd);
  }
  if (a.blockSize > a.nPositions && !a.init)
    throw new CliError(`train: --block-size ${a.blockSize} exceeds --n-positions ${a.nPositions}`);
  const device = await useDevice(a.device);
  const corpus = readCorpus(a);
  const built = await buildModel(a, corpus, device);
  const { model, tokenizer, lora } = built;
  // text: one stream, 5% held out; e2e: examples held out, loss on the reference text only
  let train: { tokens: Int32Array; mask?: Uint8Array };
  let val: { tokens: Int32Array; mask?: Uint8Array };
  try {
    const encode = (s: string): number[] => tokenizer.encode(s);
    if (a.format === 'e2e') {
      const examples = parseE2E(new TextDecoder().decode(readBytes(a.data, 'training data')));
      const n = Math.floor(examples.length * 0.95);
      const [t, v] = [e2eStream(examples.slice(0, n), encode), e2eStream(examples.slice(n), encode)];
      train = { tokens: t.tokens, mask: t.targetMask };
      val = { tokens: v.tokens, mask: v.targetMask };
    } else {
      const split = trainValSplit(Int32Array.from(encode(corpus)), 0.05);
      train = { tokens: split.train };
      val = { tokens: split.val };
    }
  } catch (e) {
    throw new CliError(`train: ${(e as Error).message} (the tokenizer cannot encode ${a.data})`);
  }
  const tokens = { length: train.tokens.length + val.tokens.length };
  if (train.tokens.length <= a.blockSize || val.tokens.length <= a.blockSize) {
    throw new CliError(
      `train: ${a.data} is too short for --block-size ${a.blockSize} (${tokens.length} tokens)`,
    );
  }
  const params = lora ? lora.trainableParameters() : model.parameters();
  let trainer: LMTrainer;
  try {
    trainer = new LMTrainer(model, params, {
      steps: a.steps,
      batchSize: a.batchSize,
      blockSize: a.blockSize,
      lr: a.lr,
      warmupSteps: a.warmup,
      weightDecay: a.weightDecay,
      gradClip: a.gradClip,
      seed: a.seed,
      allowNonFinite: a.allowNonfinite,
      compile: a.compile,
      gradAccumSteps: a.gradAccum,
    });
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  const ckpt = join(a.out, 'checkpoint.safetensors');
  const state = () => ({
    model,
    optimizer: trainer.optimizer,
    scheduler: trainer.scheduler,
    generators: { data: trainer.sampler, dropout: trainer.dropout },
    step: trainer.step,
    extra: { losses: trainer.losses.map(([s, l]) => [s, l]) },
  });
  if (opts.resume) {
    if (!existsSync(ckpt)) throw new CliError(`train --resume: ${ckpt} not found`);
    const restored = await loadCheckpoint(ckpt, state());
    trainer.step = restored.step;
    const losses = (restored.extra as { losses?: [number, number][] } | null)?.losses ?? [];
    trainer.losses.push(...losses);
    console.log(`resumed ${a.out} at step ${trainer.step}/${a.steps}`);
  } else {
    mkdirSync(a.out, { recursive: true });
    writeFileSync(argsFile(a.out), `${JSON.stringify(a, null, 2)}\n`);
  }
  const report = trainableParameters(lora ?? model);
  console.log(
    `${lora ? 'LoRA' : 'full'} training on ${device}: ${report} | ${tokens.length.toLocaleString('en-US')} tokens`,
  );
  const t0 = performance.now();
  const stopAt = cmd.opts<{ stopAfter?: number }>().stopAfter ?? Number.POSITIVE_INFINITY;
  const progress = new TrainProgress(trainer.step, a.steps, a.batchSize * a.gradAccum * a.blockSize);
  let lastVal: number | null = null;
  try {
    while (trainer.step < a.steps) {
      if (trainer.step >= stopAt) {
        await saveCheckpoint(ckpt, state());
        progress.stop();
        console.log(`stopped at step ${trainer.step} (--stop-after); continue with --resume`);
        return;
      }
      const loss = await trainer.trainStep(train.tokens, train.mask);
      const s = trainer.step;
      const evalNow = a.evalEvery > 0 && (s % a.evalEvery === 0 || s === a.steps);
      const v = evalNow ? await trainer.evaluate(val.tokens, 2, 1234, val.mask) : null;
      if (v !== null) lastVal = s === a.steps ? v : null;
      progress.update(s, loss, v, trainer.lr);
      if (s % a.saveEvery === 0 || s === a.steps) await saveCheckpoint(ckpt, state());
    }
  } finally {
    progress.stop();
  }
  const seconds = (performance.now() - t0) / 1000;
  if (a.finalEval !== false) {
    // the held-out loss of the final weights, unless the last step already measured it
    const v = lastVal ?? (await trainer.evaluate(val.tokens, 2, 1234, val.mask));
    console.log(`validation loss ${v.toFixed(4)} at step ${trainer.step} (2 held-out batches)`);
  }
  if (lora) {
    const saved = await saveAdapter(lora, a.out);
    if (built.tokenizerSpec)
      writeFileSync(join(a.out, 'tokenizer.json'), `${JSON.stringify(built.tokenizerSpec)}\n`);
    console.log(
      `saved adapter to ${saved.dir} (${saved.weightsBytes + saved.configBytes} bytes) in ${seconds.toFixed(1)} s`,
    );
  } else {
    const { bytes } = await savePretrained(
      model,
      a.out,
      tokenizerOptions(built.tokenizerSpec, built.tokenizerDir),
    );
    console.log(`saved model to ${a.out} (${bytes} bytes) in ${seconds.toFixed(1)} s`);
  }
}

// ---------------------------------------------------------------------------------------------
// generate, merge, inspect

/** What `savePretrained` needs to write the tokenizer: lowrank's spec, or the HF files to copy. */
function tokenizerOptions(
  spec: TokenizerSpec | null | undefined,
  dir: string | null,
): { tokenizer?: TokenizerSpec; tokenizerFrom?: string } {
  return spec ? { tokenizer: spec } : dir ? { tokenizerFrom: dir } : {};
}

async function loadWithAdapter(
  modelDir: string,
  adapterDir: string | undefined,
  device: Device,
  dtype: LoadDType = 'f32',
  quantize?: QuantizeFlag,
) {
  const folder = await modelFolder(modelDir);
  const model = await loadModel(modelDir, device, dtype, quantize);
  let lora: LoraModel<AutoCausalLM> | null = null;
  if (adapterDir) {
    const cfg = join(adapterDir, 'adapter_config.json');
    const weights = join(adapterDir, 'adapter_model.safetensors');
    const configText = new TextDecoder().decode(readBytes(cfg, 'adapter config'));
    try {
      lora = loadAdapterFromBytes(model, configText, readBytes(weights, 'adapter weights'), {
        onWarning: (m) => {
          if (m.startsWith('loadAdapter:')) console.error(`warning: ${m}`); // another base than the adapter's
        },
      });
    } catch (e) {
      throw new CliError(`adapter ${adapterDir} does not fit model ${modelDir}: ${(e as Error).message}`);
    }
  }
  return { model, lora, folder, tokenizer: loadTokenizer(folder, model.config.vocab_size) };
}

async function generateCmd(o: {
  model: string;
  adapter?: string;
  prompt: string;
  maxTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  greedy?: boolean;
  chat?: boolean;
  seed: number;
  dtype: LoadDType;
  quantize?: QuantizeFlag;
  device: string;
}): Promise<void> {
  const device = await useDevice(o.device);
  const { model, tokenizer } = await loadWithAdapter(o.model, o.adapter, device, o.dtype, o.quantize);
  let prompt: number[];
  let text = o.prompt;
  try {
    if (o.chat) {
      if (!(tokenizer instanceof HFTokenizer) || tokenizer.chatTemplate === null)
        throw new CliError(
          `generate --chat: ${o.model} has no chat template (tokenizer_config.json / chat_template.jinja)`,
        );
      text = tokenizer.applyChatTemplate([{ role: 'user', content: o.prompt }], {
        addGenerationPrompt: true,
      });
    }
    prompt = tokenizer.encode(text);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  if (prompt.length === 0) throw new CliError('generate: --prompt is empty');
  process.stdout.write(text);
  const r = await generate(model, prompt, {
    maxNewTokens: o.maxTokens,
    temperature: o.temperature,
    topK: o.topK,
    topP: o.topP,
    greedy: o.greedy,
    seed: o.seed,
    onToken: (id) => process.stdout.write(tokenizer.decode([id])),
  });
  process.stdout.write(`\n[${r.tokens.length} tokens, stopped by ${r.stoppedBy}]\n`);
}

async function chatCmd(o: {
  model: string;
  adapter?: string;
  system?: string;
  maxTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  greedy?: boolean;
  seed: number;
  showPrompt?: boolean;
  dtype: LoadDType;
  quantize?: QuantizeFlag;
  device: string;
}): Promise<void> {
  const device = await useDevice(o.device);
  const { model, tokenizer, folder } = await loadWithAdapter(o.model, o.adapter, device, o.dtype, o.quantize);
  if (process.stdin.isTTY) console.error(`chatting with ${o.model}: one line a turn, Ctrl-D to end`);
  try {
    await runChat(model, {
      tokenizer,
      folder,
      system: o.system,
      sampling: {
        maxNewTokens: o.maxTokens,
        temperature: o.temperature,
        topK: o.topK,
        topP: o.topP,
        greedy: o.greedy,
        seed: o.seed,
      },
      input: process.stdin,
      write: (t) => process.stdout.write(t),
      trace: o.showPrompt ? (line) => console.error(line) : undefined,
    });
  } catch (e) {
    if (e instanceof ChatError) throw new CliError(e.message);
    throw e;
  }
}

async function mergeCmd(o: { model: string; adapter: string; out: string; device: string }): Promise<void> {
  const device = await useDevice(o.device);
  const { model, lora, folder } = await loadWithAdapter(o.model, o.adapter, device);
  if (!lora) throw new CliError('merge: --adapter is required');
  // probe: the same logits before and after merging (the paper's zero-latency claim, checked)
  const n = Math.min(16, model.contextLength);
  const probe = Array.from({ length: n }, (_, i) => (i * 7919) % model.config.vocab_size);
  const before = await logitsOf(model, probe);
  const merged = lora.mergeAndUnload();
  const after = await logitsOf(merged, probe);
  let maxDiff = 0;
  for (let i = 0; i < before.length; i++) maxDiff = Math.max(maxDiff, Math.abs(before[i] - after[i]));
  const tok = join(folder, 'tokenizer.json'); // a Hub id's snapshot folder
  const json = existsSync(tok) ? readJSON(tok, 'tokenizer') : undefined;
  const hf = json !== undefined && isHFTokenizerJson(json);
  const spec = json && !hf ? (json as unknown as TokenizerSpec) : undefined;
  const { bytes } = await savePretrained(merged, o.out, tokenizerOptions(spec, hf ? folder : null));
  console.log(
    `merged ${o.adapter} into ${o.model} → ${o.out} (${bytes} bytes); max |merged − unmerged| logit ${maxDiff.toExponential(2)}`,
  );
}

async function logitsOf(model: AutoCausalLM, ids: number[]): Promise<Float32Array> {
  model.eval();
  const t: Tensor = noGrad(() =>
    tidy(() => model.forward(tensor([ids], { dtype: 'int32', device: model.device })).logits),
  );
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
}

function fmtBytes(n: number): string {
  return n < 1024
    ? `${n} B`
    : n < 1024 ** 2
      ? `${(n / 1024).toFixed(1)} KiB`
      : `${(n / 1024 ** 2).toFixed(2)} MiB`;
}

/** A footprint as one line: bytes by storage type, their sum, and the float32 model's size. */
function fmtFootprint(fp: ModelFootprint): string {
  const types = Object.entries(fp.byType)
    .map(([t, n]) => `${t} ${fmtBytes(n)}`)
    .join(', ');
  const q = fp.quantized;
  const layers =
    q.f32Bytes > 0
      ? `; quantized weights ${fmtBytes(q.bytes)} = ${(q.bytes / q.f32Bytes).toFixed(3)}x their ${fmtBytes(q.f32Bytes)} in float32`
      : '';
  return `${types} = ${fmtBytes(fp.bytes)} (float32: ${fmtBytes(fp.f32Bytes)}, ${(fp.bytes / fp.f32Bytes).toFixed(3)}x)${layers}`;
}

/** Bytes of a file's tensors by their stored dtype, beside the same tensors widened to float32. */
interface FileStorage {
  byType: Record<string, number>;
  bytes: number;
  /** Float tensors at 4 bytes a value; integer ones as stored. */
  f32Bytes: number;
}

async function inspectCmd(path: string, o: { json?: boolean; quantize?: QuantizeFlag }): Promise<void> {
  if (!existsSync(path)) throw new CliError(`inspect: not found: ${path}`);
  const files = statSync(path).isDirectory() ? readdirSync(path).map((f) => join(path, f)) : [path];
  // a run directory also holds checkpoint.safetensors (training state): show the model/adapter
  const all = files.filter((f) => f.endsWith('.safetensors'));
  const main = all.filter((f) => /(^|[\\/])(model|adapter_model)\.safetensors$/.test(f));
  const sts = main.length > 0 ? main : all;
  if (sts.length === 0) throw new CliError(`inspect: no .safetensors file in ${path}`);
  const report: Record<string, unknown> = { path: resolve(path) };
  const lines: string[] = [];
  const configPath = statSync(path).isDirectory() ? join(path, 'config.json') : '';
  const adapterPath = statSync(path).isDirectory() ? join(path, 'adapter_config.json') : '';
  const isModel = configPath !== '' && existsSync(configPath);
  if (o.quantize && !isModel)
    throw new CliError(
      `inspect --quantize ${o.quantize}: needs a model directory (config.json + model.safetensors), got ${path}`,
    );
  if (isModel) {
    const c = readJSON(configPath, 'model config');
    report.config = c;
    lines.push(
      c.model_type === 'gpt2' || c.model_type === undefined
        ? `model: ${String(c.model_type)} vocab ${c.vocab_size}, positions ${c.n_positions}, width ${c.n_embd}, ${c.n_layer} layers, ${c.n_head} heads`
        : `model: ${String(c.model_type)} vocab ${c.vocab_size}, positions ${c.max_position_embeddings}, width ${c.hidden_size}, ${c.num_hidden_layers} layers, ${c.num_attention_heads} heads (${c.num_key_value_heads ?? c.num_attention_heads} key/value)`,
    );
  }
  if (adapterPath && existsSync(adapterPath)) {
    const c = readJSON(adapterPath, 'adapter config');
    report.adapter = c;
    lines.push(
      `adapter: ${String(c.peft_type)} r=${c.r}, alpha=${c.lora_alpha}, targets ${JSON.stringify(c.target_modules)}, dropout ${c.lora_dropout}, bias ${c.bias}`,
    );
  }
  const tensors: { file: string; name: string; dtype: string; shape: number[]; params: number }[] = [];
  const storage: FileStorage = { byType: {}, bytes: 0, f32Bytes: 0 };
  let total = 0;
  let bytes = 0;
  for (const f of sts) {
    const raw = readBytes(f);
    bytes += raw.length;
    let entries: ReturnType<typeof safetensorsEntries>;
    try {
      entries = safetensorsEntries(raw);
    } catch (e) {
      throw new CliError(`inspect: ${f}: ${(e as Error).message}`);
    }
    for (const [name, t] of Object.entries(entries.tensors)) {
      if (name.startsWith('__optim__.')) continue;
      const params = t.shape.reduce((x, y) => x * y, 1);
      total += params;
      tensors.push({ file: f, name, dtype: t.dtype, shape: [...t.shape], params });
      storage.byType[t.dtype] = (storage.byType[t.dtype] ?? 0) + t.bytes.length;
      storage.bytes += t.bytes.length;
      storage.f32Bytes += /^(F|BF)\d+$/.test(t.dtype) ? params * 4 : t.bytes.length;
    }
  }
  const lora = tensors.filter((t) => /lora_/.test(t.name)).reduce((s, t) => s + t.params, 0);
  report.tensors = tensors;
  report.parameters = total;
  report.loraParameters = lora;
  report.bytes = bytes;
  report.storage = storage;
  let footprint: ModelFootprint | null = null;
  if (o.quantize) {
    // the base as `train --lora --quantize` / `fromPretrained(dir, { quantize })` would hold it,
    // quantized here on the CPU (the whole float32 model is loaded first)
    await useDevice('cpu');
    const model = await loadModel(path, 'cpu', 'f32', o.quantize);
    footprint = modelFootprint(model);
    model.dispose();
    report.footprint = { quantize: { bits: o.quantize, blockSize: 64, skip: ['lm_head'] }, ...footprint };
  }
  if (o.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  for (const t of tensors) lines.push(`  ${t.name.padEnd(60)} ${t.dtype.padEnd(4)} [${t.shape.join(', ')}]`);
  lines.push(
    `${tensors.length} tensors, ${total.toLocaleString('en-US')} parameters${lora ? ` (${lora.toLocaleString('en-US')} LoRA)` : ''}, ${fmtBytes(bytes)} in ${sts.length} file(s)`,
  );
  const types = Object.entries(storage.byType)
    .map(([t, n]) => `${t} ${fmtBytes(n)}`)
    .join(', ');
  lines.push(
    `storage: ${types} (float32: ${fmtBytes(storage.f32Bytes)}, ${(storage.bytes / storage.f32Bytes).toFixed(3)}x)`,
  );
  if (footprint) lines.push(`base ${o.quantize}: ${fmtFootprint(footprint)}`);
  console.log(lines.join('\n'));
}

// ---------------------------------------------------------------------------------------------

/**
 * Appends each train flag's default to its help line. The defaults are not commander defaults:
 * a value from --config must win over them, and commander cannot tell a default from a flag.
 */
function showDefaults(train: Command): void {
  const defaults = TRAIN_DEFAULTS as unknown as Record<string, unknown>;
  for (const o of train.options) {
    const v = defaults[o.attributeName()];
    if (v === undefined || typeof v === 'boolean' || o.description.includes('default')) continue;
    o.description += ` (default: ${Array.isArray(v) ? v.join(' ') : String(v)})`;
  }
}

/** This package's version (package.json next to src/ and dist/). */
function version(): string {
  const json = readJSON(new URL('../package.json', import.meta.url).pathname, 'package.json');
  return String(json.version);
}

export function makeProgram(): Command {
  const program = new Command('lowrank')
    .description(
      'Train, fine-tune (LoRA), generate with, chat with, merge and inspect GPT-2 and Llama-family checkpoints.',
    )
    .version(version(), '-V, --version', 'print the version')
    .configureOutput({
      // the whole message: commander's second line holds hints such as "(Did you mean --data?)"
      outputError: (s, write) => write(`lowrank: ${s.trimEnd().replace(/^error: /, '')} (see --help)\n`),
    })
    .exitOverride();

  program
    .command('train')
    .description('train a GPT-2 from scratch or fine-tune one (full or LoRA); resumable')
    .option('--data <file>', 'training text (a plain text file, or E2E lines with --format e2e)')
    .addOption(new Option('--format <format>', 'how to read --data').choices(['text', 'e2e']))
    .option('--out <dir>', 'run directory: checkpoint.safetensors, then the model or adapter')
    .option('--config <file>', 'JSON file with any of these options (camelCase keys); flags override it')
    .option('--resume', 'continue the run in --out from its last checkpoint')
    .option('--init <dir>', 'start from this model directory (config.json + model.safetensors)')
    .option(
      '--model <dir|hub-id>',
      'same as --init: a GPT-2 or Llama-family (llama, qwen2, mistral) HF directory, or a Hub id (org/name, downloaded into the HF cache)',
    )
    .addOption(new Option('--tokenizer <kind>', 'tokenizer of a new model').choices(['char', 'byte', 'gpt2']))
    .option('--n-embd <n>', 'width of a new model', int())
    .option('--n-layer <n>', 'layers of a new model', int())
    .option('--n-head <n>', 'attention heads of a new model', int())
    .option('--n-positions <n>', 'context length of a new model', int())
    .option('--dropout <p>', 'dropout of a new model', num(0, 0.99))
    .option('--lora', 'LoRA fine-tuning of --init (only the adapter trains and is saved)')
    .option('--r <n>', 'LoRA rank', int())
    .option('--alpha <n>', 'LoRA alpha (scaling alpha / r)', num(0))
    .option(
      '--targets <names...>',
      'LoRA target modules, by suffix (default: c_attn for GPT-2, q_proj v_proj for Llama-family models)',
    )
    .option('--lora-dropout <p>', 'dropout on the LoRA path', num(0, 0.99))
    .option('--steps <n>', 'optimizer steps', int())
    .option('--batch-size <n>', 'sequences per micro-batch (a step is --grad-accum of them)', int())
    .option('--grad-accum <n>', 'micro-batches per optimizer step (gradient accumulation)', int())
    .option('--block-size <n>', 'tokens per sequence', int(2))
    .option('--lr <x>', 'peak learning rate (AdamW, warmup then cosine)', num(0))
    .option('--warmup <n>', 'warmup steps', int(0))
    .option('--weight-decay <x>', 'AdamW weight decay', num(0))
    .option('--grad-clip <x>', 'clip the gradient norm (0: off)', num(0))
    .option('--seed <n>', 'seed of initialisation and batches', int(0))
    .option('--save-every <n>', 'checkpoint every n steps', int())
    .option('--eval-every <n>', 'validation loss every n steps (0: never)', int(0))
    .addOption(quantizeOption('with --lora, store the frozen base of --init'))
    .addOption(
      new Option('--device <device>', 'where to run (auto: a hardware GPU, else the CPU)').choices([
        'auto',
        'cpu',
        'webgpu',
      ]),
    )
    .option('--allow-nonfinite', 'keep training when a loss is NaN or infinite (default: stop with an error)')
    .option('--no-final-eval', 'skip the validation loss printed at the end')
    .option(
      '--no-compile',
      'run every step eagerly (default: compiled steps, lr.compile: traced once, then replayed)',
    )
    .addOption(
      new Option('--stop-after <n>', 'stop (with a checkpoint) after step n').argParser(int()).hideHelp(),
    )
    .action(async (_o, cmd: Command) => train(cmd));
  showDefaults(program.commands.find((c) => c.name() === 'train')!);

  program
    .command('generate')
    .description('generate text from a model (and optionally a LoRA adapter), with a KV cache')
    .requiredOption('--model <dir|hub-id>', 'model directory or Hub id (org/name)')
    .option('--adapter <dir>', 'PEFT adapter directory to apply')
    .requiredOption('--prompt <text>', 'prompt text')
    .option('--max-tokens <n>', 'most new tokens', int(0), 100)
    .option('--temperature <t>', 'sampling temperature (0: greedy)', num(0), 1)
    .option('--top-k <k>', 'keep the k most likely tokens', int())
    .option('--top-p <p>', 'nucleus sampling threshold', num(0.000001, 1))
    .option('--greedy', 'always take the most likely token')
    .option('--chat', "wrap the prompt as a user message in the model's chat template")
    .option('--seed <n>', 'sampling seed', int(0), 0)
    .addOption(dtypeOption())
    .addOption(quantizeOption('store the base'))
    .addOption(deviceOption())
    .action(generateCmd);

  program
    .command('chat')
    .description(
      'chat with a model through its chat template: each stdin line is a user turn, the reply is generated with a KV cache and kept in the conversation',
    )
    .requiredOption('--model <dir|hub-id>', 'model directory or Hub id (org/name)')
    .option('--adapter <dir>', 'PEFT adapter directory to apply')
    .option('--system <text>', 'a system message put first')
    .option('--max-tokens <n>', 'most new tokens a reply', int(1), 256)
    .option('--temperature <t>', 'sampling temperature (0: greedy)', num(0), 0.7)
    .option('--top-k <k>', 'keep the k most likely tokens', int())
    .option('--top-p <p>', 'nucleus sampling threshold', num(0.000001, 1))
    .option('--greedy', 'always take the most likely token')
    .option('--seed <n>', 'sampling seed', int(0), 0)
    .option('--show-prompt', "print each turn's rendered prompt, its token ids and the reply's ids to stderr")
    .addOption(dtypeOption())
    .addOption(quantizeOption('store the base'))
    .addOption(deviceOption())
    .action(chatCmd);

  program
    .command('merge')
    .description('merge a LoRA adapter into its base model: W ← W + (alpha/r)·B·A, saved as a plain model')
    .requiredOption('--model <dir>', 'base model directory')
    .requiredOption('--adapter <dir>', 'PEFT adapter directory')
    .requiredOption('--out <dir>', 'output model directory')
    .addOption(deviceOption())
    .action(mergeCmd);

  program
    .command('inspect')
    .description(
      'list the tensors, parameters, adapters and sizes (bytes by storage type beside float32) of a model/adapter directory or .safetensors file',
    )
    .argument('<path>', 'directory or .safetensors file')
    .option('--json', 'print JSON')
    .addOption(quantizeOption("also report the memory of the model's base loaded with"))
    .action(inspectCmd);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = makeProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    const err = e as { code?: string; exitCode?: number; message?: string };
    if (typeof err.code === 'string' && err.code.startsWith('commander.')) {
      // help and version exit 0; commander already printed its one-line error
      return err.exitCode ?? 1;
    }
    console.error(`lowrank: ${err.message ?? String(e)}`);
    if (!(e instanceof CliError) && process.env.LOWRANK_DEBUG) console.error(e);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${resolve(process.argv[1])}`).href) {
  process.exitCode = await main(process.argv.slice(2));
}
