/**
 * Everything the page does with the engine, without the DOM: initialise a backend, fetch the
 * checkpoint, train LoRA adapters, switch between them, generate, serialise an adapter. The page
 * (main.ts) drives it from buttons; the browser test reaches it through `window.lowrankPage`.
 */
import * as lr from 'lowrank';
import { greedyByLength } from '../../e2e/batched-greedy.js';
import { type BaseQuant, checkTrainSettings, type GenerateSettings, type TrainSettings } from './form.js';
import { type ModelSource, type ShippedModel, shippedSource, tokenizerOf } from './model-source.js';

export type { TrainSettings } from './form.js';

export const BASE = 'base';

export interface AdapterInfo {
  name: string;
  source: string;
  r: number;
  alpha: number;
  targets: string[];
  steps: number;
  /** (step, training loss) */
  losses: [number, number][];
  evalBefore: number;
  evalAfter: number;
  tokensPerSecond: number;
  /** The base it was trained on: 'nf4' or 'int8' when quantized (absent: float32, as before this field). */
  base?: BaseQuant;
}

export interface StepReport {
  step: number;
  steps: number;
  loss: number;
  tokensPerSecond: number;
  /** Seconds since the first step started. */
  elapsedSeconds: number;
  /** Seconds the remaining steps should take at the mean pace so far. */
  etaSeconds: number;
  /** `lr.memory().numBytes` after the step: bytes of every live tensor (weights, optimizer state). */
  memoryBytes: number;
  /** `lr.peakMemory()`: the most bytes live at once since the run started. */
  peakBytes: number;
  /** `lr.memory().quantized`: the quantized weights by format, beside their float32 size. */
  quantized: Record<string, { bytes: number; f32Bytes: number }>;
}

/**
 * Where the base comes from, read again for every rebuild (the files' bytes are not kept), and
 * the dtype its weights load in ('f16' / 'bf16': a 16-bit base, `fromFiles`' `dtype`).
 */
interface Checkpoint {
  source: ModelSource;
  dtype: lr.LoadDType;
}

/**
 * The model of a checkpoint on `device`, in eval mode, its linear layers quantized as `q` asks.
 * `fromFiles` builds it on the device and quantizes each weight as the checkpoint streams in,
 * one tensor at a time, so neither the host nor a GPU ever holds the float32 weights of a
 * quantized layer (beyond the one tensor being converted). Every GPT-2 Conv1D (Llama Linear) is
 * quantized; the embeddings (tied to lm_head: `fromFiles` skips `lm_head`), norms and biases stay
 * float32. Unquantized, the weights load in the checkpoint's `dtype` (a 16-bit base keeps the
 * tables in 16 bits too).
 */
async function buildModel(c: Checkpoint, device: lr.Device, q: BaseQuant): Promise<lr.AutoCausalLM> {
  // the weights by range where the source has them as Blobs (ModelSource.weights): one tensor's bytes at a time
  const model = await lr.AutoModelForCausalLM.fromFiles(
    c.source.weights,
    q === 'none' ? { device, dtype: c.dtype } : { device, quantize: q },
  );
  model.eval();
  return model;
}

/** What the user trains on: token ids for training and for the held-out loss. */
export interface Corpus {
  label: string;
  train: Int32Array;
  heldOut: Int32Array;
  /**
   * 1 where a token counts in the loss, one entry per token of `train` / `heldOut` (E2E: the
   * references, not the meaning representations, as the demo and the LoRA paper train);
   * absent: every token counts.
   */
  trainMask?: Uint8Array;
  heldOutMask?: Uint8Array;
  /** Characters that were not in the vocabulary and became spaces. */
  replaced: number;
}

/** The E2E task, with the test split's first meaning representations (the page's example prompts). */
export interface E2ECorpus extends Corpus {
  testMrs: string[];
}

/** The shipped model's pre-training (its training.json): the Llama's loss on each corpus, the char model's one number. */
export interface Pretraining {
  steps: number;
  valLoss: number | Record<string, number>;
}

export class Session {
  readonly adapters = new Map<string, AdapterInfo>();
  active: string = BASE;
  lora: lr.LoraModel<lr.AutoCausalLM> | null = null;
  /** How the base's linear layers are stored ('none': float32, the checkpoint's weights). */
  quantization: BaseQuant = 'none';
  /**
   * The base's memory by storage type beside its float32 size (`modelFootprint`, taken before
   * any LoRA layer adds its weights).
   */
  baseFootprint: lr.ModelFootprint;
  private stopRequested = false;
  busy = false;
  #model: lr.AutoCausalLM;

  private constructor(
    readonly device: lr.Device,
    readonly backend: string,
    model: lr.AutoCausalLM,
    private readonly checkpoint: Checkpoint,
    readonly tokenizer: lr.Tokenizer,
    /** The checkpoint's pre-training (its training.json); null when the folder has none. */
    readonly pretrain: Pretraining | null,
  ) {
    this.#model = model;
    this.baseFootprint = lr.modelFootprint(model);
    this.modelKey = modelKeyOf(model, checkpoint.source);
  }

  /**
   * Initialises the backend (WebGPU through navigator.gpu when present, else the CPU) and loads a
   * shipped checkpoint (default: the Llama).
   */
  static async open(options: {
    backend: lr.Device | 'auto';
    base: string;
    model?: ShippedModel;
    onNotice: (m: string) => void;
  }) {
    const { device, description } = await lr.init({ backend: options.backend, onNotice: options.onNotice });
    return Session.openModel({ device, backend: description }, shippedSource(options.base, options.model));
  }

  /**
   * A session over another model (a picked folder, a Hub repository: `model-source.ts`) on an
   * initialised backend, its weights in `dtype` ('f16' / 'bf16': a 16-bit base). The config, the
   * tokenizer and the weights are read before anything is built; a failure leaves no model behind.
   */
  static async openModel(
    on: { device: lr.Device; backend: string },
    source: ModelSource,
    dtype: lr.LoadDType = 'f32',
  ): Promise<Session> {
    // characters outside a char vocabulary (pasted text) become spaces instead of failing
    const tokenizer = await tokenizerOf(source);
    const training = await source.read('training.json');
    const pretrain = training ? (JSON.parse(new TextDecoder().decode(training)) as Pretraining) : null;
    const checkpoint: Checkpoint = { source, dtype };
    const model = await buildModel(checkpoint, on.device, 'none');
    if (tokenizer.vocabSize > model.config.vocab_size) {
      model.dispose();
      throw new Error(
        `${source.label}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocab_size}`,
      );
    }
    return new Session(on.device, on.backend, model, checkpoint, tokenizer, pretrain);
  }

  /** Where the base came from (what the page shows). */
  get source(): ModelSource {
    return this.checkpoint.source;
  }

  /** The dtype the base's weights were loaded in. */
  get dtype(): lr.LoadDType {
    return this.checkpoint.dtype;
  }

  /** The base model (with its LoRA layers once an adapter is trained or loaded). */
  get model(): lr.AutoCausalLM {
    return this.#model;
  }

  /**
   * Stores the base's linear layers in NF4 or int8, or back in float32 ('none'). The base is rebuilt from the
   * checkpoint's original float32 weights every time (a quantized weight cannot give them back,
   * and int8 after NF4 must not quantize NF4's rounding), then quantized; the session's adapters
   * move onto it unchanged (their PEFT weights), and the active one stays active. On a failure the
   * previous base stays as it was.
   */
  async setQuantization(q: BaseQuant): Promise<void> {
    if (this.busy) throw new Error('busy: wait for the current run to finish');
    if (this.merged !== null) throw new Error(`'${this.merged}' is merged into the base: unmerge it first`);
    if (q === this.quantization) return;
    this.busy = true;
    try {
      await this.#rebuild(q);
    } finally {
      this.busy = false;
    }
  }

  /**
   * A new base from the checkpoint, stored as `q` asks, with every adapter of the session moved
   * onto it (their PEFT weights, unchanged) and the active one active again. The new base is
   * built before the old one goes: on a failure the old one stays as it was.
   */
  async #rebuild(q: BaseQuant): Promise<void> {
    const kept: { name: string; configJson: string; safetensors: Uint8Array }[] = [];
    for (const name of this.adapters.keys()) kept.push({ name, ...(await this.serialize(name)) });
    const model = await buildModel(this.checkpoint, this.device, q);
    const old = this.#model;
    const active = this.active;
    this.#model = model;
    this.baseFootprint = lr.modelFootprint(model); // before any LoRA layer adds its weights
    this.lora = null;
    this.quantization = q;
    this.merged = null;
    old.dispose();
    for (const a of kept) {
      this.lora = lr.loadAdapterFromBytes(model, a.configJson, a.safetensors, {
        adapterName: a.name,
        onWarning: (m) => console.warn(m),
      });
    }
    this.use(active);
  }

  /**
   * The adapter whose ΔW = s·B·A is merged into the base's weights (`merge`), or null. While one
   * is, generation and logits run on the merged weights alone (no LoRA path), and training,
   * switching or deleting adapters, loading one and changing the quantization are refused: the
   * base the other actions need is gone until `unmerge`.
   */
  merged: string | null = null;

  /**
   * Merges the active adapter into the base (lowrank's `safeMerge`: W ← W + s·B·A in every
   * adapted layer, refused with the layers named when a ΔW holds NaN or infinity, nothing
   * changed then). Its A and B stay loaded, so it stays downloadable and saved as it was. On a
   * quantized base W + ΔW is requantized to the base's format (the engine warns: outputs move
   * beyond float rounding).
   */
  async merge(): Promise<void> {
    if (this.busy) throw new Error('busy: wait for the current run to finish');
    if (this.merged !== null) throw new Error(`'${this.merged}' is merged already`);
    if (!this.lora || this.active === BASE)
      throw new Error('no adapter is active: choose the adapter to merge into the base');
    this.busy = true;
    try {
      await this.lora.safeMerge([this.active]);
      this.merged = this.active;
    } finally {
      this.busy = false;
    }
  }

  /**
   * Gives the base back its own weights: rebuilt from the checkpoint (not W − ΔW, which would
   * keep float rounding, or on a quantized base a second requantization), with every adapter
   * moved onto it and the merged one active, unmerged: its logits are the ones before `merge`
   * bit for bit.
   */
  async unmerge(): Promise<void> {
    if (this.busy) throw new Error('busy: wait for the current run to finish');
    if (this.merged === null) throw new Error('no adapter is merged');
    this.busy = true;
    try {
      await this.#rebuild(this.quantization);
    } finally {
      this.busy = false;
    }
  }

  #refuseWhileMerged(what: string): void {
    if (this.merged !== null)
      throw new Error(`'${this.merged}' is merged into the base: unmerge it before ${what}`);
  }

  /**
   * Names the base model, so that an adapter saved for another model is not loaded into this one
   * (taken before any LoRA layer adds parameters).
   */
  readonly modelKey: string;

  get parameters(): number {
    return this.model.numParameters();
  }

  /** Tokens of a text, with the number of characters that were not in the (char) vocabulary. */
  encode(text: string): { ids: number[]; replaced: number } {
    const ids = this.tokenizer.encode(text);
    if (!(this.tokenizer instanceof lr.CharTokenizer)) return { ids, replaced: 0 };
    const space = this.tokenizer.encode(' ')[0];
    let replaced = 0;
    [...text].forEach((c, i) => {
      if (ids[i] === space && c !== ' ') replaced++;
    });
    return { ids, replaced };
  }

  /**
   * The E2E task (the LoRA paper's Table 3): train on the dev split, hold out the test split; the
   * loss counts the references only (`e2eStream`'s mask), as the demo trains.
   */
  async e2eCorpus(base: string): Promise<E2ECorpus> {
    const text = async (f: string): Promise<string> => {
      const res = await fetch(new URL(`data/${f}`, base));
      if (!res.ok) throw new Error(`GET data/${f}: ${res.status}`);
      return (await res.text()).replace(/\r/g, '');
    };
    const [trainText, testText] = await Promise.all([text('e2e-valid.txt'), text('e2e-test.txt')]);
    const trainSet = lr.parseE2E(trainText);
    const testSet = lr.parseE2E(testText);
    let replaced = 0;
    const encode = (t: string): number[] => {
      const r = this.encode(t);
      replaced += r.replaced;
      return r.ids;
    };
    const train = lr.e2eStream(trainSet, encode);
    const test = lr.e2eStream(testSet, encode);
    return {
      label: 'E2E NLG (restaurant data-to-text)',
      train: train.tokens,
      trainMask: train.targetMask,
      heldOut: test.tokens,
      heldOutMask: test.targetMask,
      replaced,
      testMrs: lr
        .groupByMr(testSet)
        .slice(0, 8)
        .map((g) => g.mr),
    };
  }

  /** Pasted text: the first 90% trains, the last 10% measures the held-out loss. */
  textCorpus(text: string, minLength: number): Corpus {
    const { ids, replaced } = this.encode(text);
    if (ids.length < minLength + 1) {
      throw new Error(
        `the text has ${ids.length} tokens; paste at least ${minLength + 1} (the block size + 1)`,
      );
    }
    const { train, val } = lr.trainValSplit(Int32Array.from(ids), 0.1);
    const heldOut = val.length > minLength ? val : train;
    return { label: 'pasted text', train, heldOut, replaced };
  }

  /** Activates an adapter by name, or the base model (`BASE`). */
  use(name: string): void {
    if (name !== BASE && !this.adapters.has(name)) throw new Error(`no adapter '${name}'`);
    if (name !== this.active) this.#refuseWhileMerged('switching adapters');
    if (this.lora) this.lora.setAdapter(name === BASE ? [] : name);
    this.active = name;
  }

  stop(): void {
    this.stopRequested = true;
  }

  /** Trains a new adapter on `corpus`; resolves when done or stopped. */
  async train(corpus: Corpus, s: TrainSettings, onStep: (r: StepReport) => void): Promise<AdapterInfo> {
    if (this.busy) throw new Error('busy: wait for the current run to finish');
    this.#refuseWhileMerged('training');
    checkTrainSettings(s, this.model.contextLength);
    const name = s.name.trim();
    if (name === BASE || this.adapters.has(name)) throw new Error(`adapter name '${name}' is taken`);
    this.busy = true;
    this.stopRequested = false;
    try {
      const config: lr.LoraConfig = { r: s.r, loraAlpha: 2 * s.r, targetModules: s.targets, seed: 0 };
      if (this.lora) this.lora.addAdapter(name, config).setAdapter(name);
      else this.lora = lr.applyLora(this.model, config, name);
      this.active = name;
      const evalOptions = {
        batches: 2,
        batchSize: s.batchSize,
        blockSize: s.blockSize,
        seed: 7,
        mask: corpus.heldOutMask,
      };
      const evalBefore = await lr.evaluateLM(this.model, corpus.heldOut, evalOptions);
      const trainer = new lr.LMTrainer(this.model, this.lora.trainableParameters(), {
        steps: s.steps,
        batchSize: s.batchSize,
        blockSize: s.blockSize,
        lr: s.lr,
        warmupSteps: Math.max(1, Math.floor(s.steps / 10)),
        weightDecay: 0,
        seed: 0,
        compile: s.compile ?? true,
      });
      lr.resetPeakMemory();
      const t0 = performance.now();
      let tokensPerSecond = 0;
      for (let step = 1; step <= s.steps && !this.stopRequested; step++) {
        const loss = await trainer.trainStep(corpus.train, corpus.trainMask);
        const elapsedSeconds = (performance.now() - t0) / 1000;
        tokensPerSecond = (step * s.batchSize * s.blockSize) / elapsedSeconds;
        const mem = lr.memory();
        onStep({
          step,
          steps: s.steps,
          loss,
          tokensPerSecond,
          elapsedSeconds,
          etaSeconds: (elapsedSeconds / step) * (s.steps - step),
          memoryBytes: mem.numBytes,
          peakBytes: lr.peakMemory(),
          quantized: mem.quantized,
        });
        // let the page repaint between steps
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      this.model.eval();
      const evalAfter = await lr.evaluateLM(this.model, corpus.heldOut, evalOptions);
      const info: AdapterInfo = {
        name,
        source: corpus.label,
        r: s.r,
        alpha: 2 * s.r,
        targets: s.targets,
        steps: trainer.step,
        losses: [...trainer.losses],
        evalBefore,
        evalAfter,
        tokensPerSecond,
        base: this.quantization,
      };
      this.adapters.set(name, info);
      return info;
    } catch (e) {
      if (this.lora?.adapters.includes(name) && !this.adapters.has(name)) {
        this.lora.deleteAdapter(name);
        this.use(BASE);
      }
      throw e;
    } finally {
      this.busy = false;
    }
  }

  /**
   * The tokens that end a generation: the tokenizer's end of text and, with `atNewline`, every
   * token whose text holds a newline (a BPE vocabulary merges '\n' with other whitespace, so an
   * E2E reply, one line, ends at any of them; the char model's '\n' is its end of text already).
   */
  stopTokens(atNewline: boolean): number[] {
    const eos = this.tokenizer.eosTokenId;
    const stops = new Set<number>(eos === null ? [] : [eos]);
    if (atNewline) {
      this.#newlineIds ??= Array.from({ length: this.tokenizer.vocabSize }, (_, id) => id).filter((id) =>
        this.tokenizer.decode([id]).includes('\n'),
      );
      for (const id of this.#newlineIds) stops.add(id);
    }
    return [...stops].sort((a, b) => a - b);
  }
  #newlineIds: number[] | undefined;

  /**
   * Continues `prompt` with the active adapter, or with the base model (`base`); `eos`: it ended
   * the text (a stop token, not included in `text`). Temperature 0 is greedy; top-k 0 and top-p 1
   * keep every token; the seed makes a sampled run reproducible (the base and the adapter run
   * draw the same numbers). `stopAtNewline`: a line ends the text too (`stopTokens`).
   * `noRepeatNgram` n (greedy only): the reply never completes an n-gram it already holds,
   * decoded as the demo decodes (`greedyByLength`: prompt and reply must fit the context).
   */
  async generate(
    options: Omit<GenerateSettings, 'temperature' | 'topK' | 'topP' | 'seed'> &
      Partial<GenerateSettings> & { base?: boolean; stopAtNewline?: boolean },
  ): Promise<{ text: string; eos: boolean }> {
    const ids = this.encode(options.prompt).ids;
    if (ids.length === 0) throw new Error('the prompt is empty');
    const eosId = this.stopTokens(options.stopAtNewline ?? false);
    const temperature = options.temperature ?? 0;
    const sampling: lr.SamplingOptions =
      temperature === 0
        ? { greedy: true }
        : { temperature, topK: options.topK || undefined, topP: options.topP ?? 1 };
    const n = temperature === 0 ? (options.noRepeatNgram ?? 0) : 0;
    const run = async (): Promise<{ text: string; eos: boolean }> => {
      if (n > 0) {
        const [tokens] = await greedyByLength(this.model, [ids], {
          maxNewTokens: options.maxNewTokens,
          stopIds: new Set(eosId),
          noRepeatNgram: n,
        });
        // cut before its first stop token: fewer tokens than asked for means a stop came
        return { text: this.tokenizer.decode(tokens), eos: tokens.length < options.maxNewTokens };
      }
      const r = await lr.generate(this.model, ids, {
        ...sampling,
        maxNewTokens: options.maxNewTokens,
        seed: options.seed ?? 0,
        eosTokenId: eosId,
      });
      const eos = r.stoppedBy === 'eos';
      return { text: this.tokenizer.decode(eos ? r.tokens.slice(0, -1) : r.tokens), eos };
    };
    if (options.base && this.merged !== null)
      throw new Error(`'${this.merged}' is merged into the base: the base alone is back after unmerge`);
    if (options.base && this.lora && this.active !== BASE) return this.lora.disableAdapters(run);
    return run();
  }

  /** Logits [T, vocab] of one sequence through the active adapter, or the merged weights (the test compares them with Node). */
  async logits(text: string): Promise<number[]> {
    const ids = lr.tensor([this.encode(text).ids], { dtype: 'int32' });
    const logits = lr.noGrad(() => this.model.forward(ids).logits);
    const out = Array.from(await logits.data());
    logits.dispose();
    ids.dispose();
    return out;
  }

  /**
   * Adds a saved adapter (PEFT files) to the model under `info.name` and activates it. Refused
   * while training, for a name already in the session, or for files that do not fit the model.
   */
  load(info: AdapterInfo, configJson: string, safetensors: Uint8Array): void {
    if (this.busy) throw new Error('busy: wait for the current run to finish');
    if (info.name === BASE || this.adapters.has(info.name))
      throw new Error(`an adapter named '${info.name}' is already loaded`);
    this.#refuseWhileMerged('loading another adapter');
    const handle = lr.loadAdapterFromBytes(this.model, configJson, safetensors, {
      adapterName: info.name,
      onWarning: (m) => console.warn(m),
    });
    this.lora = handle;
    this.adapters.set(info.name, info);
    this.use(info.name);
  }

  /** Removes an adapter and frees its weights; the base model is active after deleting the active one. */
  delete(name: string): void {
    if (this.busy) throw new Error('busy: wait for the current run to finish');
    if (!this.adapters.has(name)) throw new Error(`no adapter '${name}'`);
    this.#refuseWhileMerged('deleting an adapter');
    this.lora?.deleteAdapter(name);
    this.adapters.delete(name);
    if (this.active === name) this.use(BASE);
  }

  /** PEFT's two files for an adapter. */
  async serialize(name: string): Promise<{ configJson: string; safetensors: Uint8Array }> {
    if (!this.lora || !this.adapters.has(name)) throw new Error(`no adapter '${name}' to download`);
    return lr.serializeAdapter(this.lora, name);
  }
}

/**
 * Names the base model, so that an adapter saved for another model is not loaded into this one:
 * the shipped GPT-2 keeps the key it always had (adapters saved before stay loadable); others
 * add their type and source.
 */
function modelKeyOf(model: lr.AutoCausalLM, source: ModelSource): string {
  if (model instanceof lr.GPT2LMHeadModel && source.id === 'shipped') {
    const c = model.config;
    return `gpt2 ${c.n_layer}x${c.n_embd} vocab ${c.vocab_size} ctx ${c.n_positions} params ${model.numParameters()}`;
  }
  const c = model.config;
  return `${c.model_type} ${source.id} vocab ${c.vocab_size} ctx ${model.contextLength} params ${model.numParameters()}`;
}
