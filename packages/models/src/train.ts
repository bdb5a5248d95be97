import { noGrad } from '@lowrank/autograd';
import { AdamW, clipGradNorm, LambdaLR, type OptimizerStateDict, warmupCosineLambda } from '@lowrank/nn';
import {
  type CompiledFunction,
  compile,
  fromTypedArray,
  Generator,
  type Tensor,
  tidy,
} from '@lowrank/tensor';
import type { CausalLM } from './causal-lm.js';
import { randomWindows } from './data.js';
import { useDropoutGenerator } from './dropout-generator.js';
import { exclusive } from './exclusive.js';

/** Options of `LMTrainer`. */
export interface TrainerOptions {
  /** Steps in the whole run (the cosine schedule ends there). */
  steps: number;
  /** Windows per batch. */
  batchSize: number;
  /** Tokens per window (≤ n_positions). */
  blockSize: number;
  /** Peak learning rate (after warmup). */
  lr: number;
  /** Linear warmup steps (default: 5% of the run). */
  warmupSteps?: number;
  /** Final lr as a fraction of `lr` (default 0.1). */
  minLrRatio?: number;
  /** AdamW's decoupled weight decay on matrices (default 0.01; biases and LayerNorm weights get none). */
  weightDecay?: number;
  /** Clip the global gradient norm to this (default 1; 0 turns it off). */
  gradClip?: number;
  /** Seed of the batch sampler (default 0). */
  seed?: number;
  /**
   * Keep training when a step's loss is NaN or ±Inf (default false: `trainStep` throws, so a
   * corrupt checkpoint or a diverged run stops instead of saving NaN weights step after step).
   */
  allowNonFinite?: boolean;
  /**
   * Run each step as a compiled step (`lr.compile`): after a warm-up step and a traced one,
   * steps replay their recorded kernels with no op, autograd or tidy code (default true; false
   * runs every step eagerly, as before). The results are the same (bit for bit on the CPU).
   */
  compile?: boolean;
  /**
   * Micro-batches per optimizer step (default 1). Each `trainStep` draws `gradAccumSteps`
   * batches of `batchSize` windows, runs forward and backward on each in turn (summing the
   * gradients of loss / gradAccumSteps), then clips and steps once: the update of one batch of
   * `gradAccumSteps · batchSize` windows at the activation memory of one micro-batch. Inside a
   * compiled step the micro-batches unroll into one trace, so their activations share slots.
   * Each micro-batch's loss is its own token mean, so with a mask whose counts differ between
   * micro-batches the result weights tokens slightly differently from one large batch (as in HF).
   */
  gradAccumSteps?: number;
}

/** Everything needed to continue a run exactly where it stopped. */
export interface TrainerState {
  /** Steps done. */
  step: number;
  /** The batch sampler's generator state. */
  sampler: number[];
  /** The dropout generator's state (absent in states saved before it existed). */
  dropout?: number[];
  /** The optimizer's state (moments, step counts). */
  optimizer: OptimizerStateDict;
  /** (step, loss) of every step so far. */
  losses: [number, number][];
}

/** Token streams already checked, with the vocabulary size they were checked against. */
const checkedStreams = new WeakMap<object, number>();

/**
 * Every token id must lie in [0, vocab_size): an id of −1 or V would be a label the fused loss
 * kernels turn into a NaN row (and an embedding lookup refuses at read-back on WebGPU). Checked
 * once per stream on the host, where the ids are, before anything runs on the device.
 */
function checkTokens(op: string, tokens: ArrayLike<number>, vocab: number): void {
  if (checkedStreams.get(tokens) === vocab) return;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!(Number.isInteger(t) && t >= 0 && t < vocab))
      throw new Error(`${op}: token ${t} at position ${i} is outside [0, ${vocab}) (the model's vocab_size)`);
  }
  checkedStreams.set(tokens, vocab);
}

/**
 * The causal-LM training loop shared by the demo and `lowrank train`: random windows of a token
 * stream, AdamW over the given (trainable) parameters, warmup + cosine schedule, gradient
 * clipping. Only `params` are optimised, so a LoRA run keeps optimizer state for A and B alone.
 */
export class LMTrainer {
  /** AdamW over `params`, in two groups (with and without weight decay). */
  readonly optimizer: AdamW;
  /** Warmup + cosine schedule over `options.steps`. */
  readonly scheduler: LambdaLR;
  /** Generator of the batch positions (seeded by `options.seed`). */
  readonly sampler: Generator;
  /**
   * The model's own dropout generator (seeded by `options.seed`; given to its Dropout and LoRA
   * layers), so a run's masks do not depend on what else draws random numbers meanwhile.
   */
  readonly dropout: Generator;
  /** Steps done so far. */
  step = 0;
  /** (step, training loss) of every step so far. */
  readonly losses: [number, number][] = [];
  /**
   * The step as a compiled function of the batch (ids, and labels when a mask is given): forward,
   * backward, clipping and the optimizer step; see `TrainerOptions.compile`.
   */
  readonly compiledStep: CompiledFunction<[Tensor] | [Tensor, Tensor], Tensor>;

  constructor(
    /** The model trained. */
    readonly model: CausalLM,
    /** The parameters optimised (a LoRA run passes only A and B). */
    readonly params: Tensor[],
    /** The run's options. */
    readonly options: TrainerOptions,
  ) {
    if (options.blockSize > model.contextLength) {
      throw new Error(
        `train: blockSize ${options.blockSize} exceeds the model's context length ${model.contextLength}`,
      );
    }
    if (params.length === 0) throw new Error('train: no trainable parameters');
    // no weight decay on biases and LayerNorm weights (1-D), as nanoGPT and HF do
    const decay = params.filter((p) => p.rank >= 2);
    const noDecay = params.filter((p) => p.rank < 2);
    const groups = [
      { params: decay, weightDecay: options.weightDecay ?? 0.01 },
      { params: noDecay, weightDecay: 0 },
    ].filter((g) => g.params.length > 0);
    this.optimizer = new AdamW(groups, { lr: options.lr, betas: [0.9, 0.95] });
    this.scheduler = new LambdaLR(
      this.optimizer,
      warmupCosineLambda({
        warmupSteps: options.warmupSteps ?? Math.floor(options.steps * 0.05),
        totalSteps: options.steps,
        minLrRatio: options.minLrRatio ?? 0.1,
      }),
    );
    this.sampler = new Generator(options.seed ?? 0);
    // a different stream from the sampler's: the same seed would correlate masks and batches
    this.dropout = useDropoutGenerator(model, new Generator(((options.seed ?? 0) ^ 0x5f3759df) >>> 0));
    const accum = options.gradAccumSteps ?? 1;
    if (!(Number.isInteger(accum) && accum >= 1))
      throw new Error(`train: gradAccumSteps must be an integer ≥ 1, got ${accum}`);
    this.compiledStep = compile((ids: Tensor, labels: Tensor = ids) => this.optimize(ids, labels), {
      enabled: options.compile ?? true,
    });
  }

  /**
   * Forward, backward, clipping and the optimizer step on one batch ([gradAccumSteps · batchSize,
   * blockSize]: micro-batch i is rows i·batchSize …); returns the (detached) mean loss.
   */
  private optimize(ids: Tensor, labels: Tensor): Tensor {
    const accum = this.options.gradAccumSteps ?? 1;
    let l: Tensor;
    if (accum === 1) {
      l = this.model.forward(ids, { labels }).loss!;
      l.backward();
    } else {
      const b = this.options.batchSize;
      let total: Tensor | null = null;
      for (let i = 0; i < accum; i++) {
        const rows = (t: Tensor): Tensor => t.slice(0, i * b, (i + 1) * b);
        const micro = this.model.forward(rows(ids), { labels: rows(labels) }).loss!.div(accum);
        micro.backward();
        const d = micro.detach();
        total = total ? total.add(d) : d;
      }
      l = total as Tensor;
    }
    const clip = this.options.gradClip ?? 1;
    if (clip > 0) clipGradNorm(this.params, clip).dispose();
    this.optimizer.step();
    this.optimizer.zeroGrad();
    return l.detach();
  }

  /**
   * One optimisation step on a random batch of `tokens`; resolves to the batch's loss. With
   * `mask`, only tokens whose mask is set are predicted (see `randomWindows`). Steps and
   * evaluations of one model run one at a time, in call order. A NaN or infinite loss throws
   * (after the step, which `step` does not count) unless `allowNonFinite` is set.
   */
  trainStep(tokens: ArrayLike<number>, mask?: ArrayLike<number>): Promise<number> {
    return exclusive(this.model, () => this.runStep(tokens, mask));
  }

  private async runStep(tokens: ArrayLike<number>, mask?: ArrayLike<number>): Promise<number> {
    // LoRA layers switched off by a pending disableAdapters(async …) would train nothing of theirs
    if (this.model.modules().some((m) => (m as { disabled?: unknown }).disabled === true)) {
      throw new Error(
        "trainStep: the model's LoRA adapters are switched off by a disableAdapters call still running; await it before training",
      );
    }
    checkTokens('trainStep', tokens, this.model.config.vocab_size);
    const { blockSize } = this.options;
    const windows = this.options.batchSize * (this.options.gradAccumSteps ?? 1);
    const batch = randomWindows(tokens, windows, blockSize, this.sampler, mask);
    this.model.train();
    const device = this.params[0].device;
    const loss = tidy(() => {
      const ids = fromTypedArray(batch.ids, [windows, blockSize], { dtype: 'int32', device });
      if (!mask) return this.compiledStep(ids);
      const labels = fromTypedArray(batch.labels, [windows, blockSize], { dtype: 'int32', device });
      return this.compiledStep(ids, labels);
    });
    this.scheduler.step();
    const value = (await loss.item()) as number;
    loss.dispose();
    if (!Number.isFinite(value) && !this.options.allowNonFinite) {
      throw new Error(
        `train: the loss of step ${this.step + 1} is ${value}: stopping (corrupt weights or data, a label outside [0, vocab_size), or a diverging run: try a lower lr); allowNonFinite (lowrank train --allow-nonfinite) keeps going`,
      );
    }
    this.step++;
    this.losses.push([this.step, value]);
    return value;
  }

  /** Mean loss over `batches` random batches of `tokens` (fixed seed: comparable across calls). */
  async evaluate(
    tokens: ArrayLike<number>,
    batches = 4,
    seed = 1234,
    mask?: ArrayLike<number>,
  ): Promise<number> {
    return evaluateLM(this.model, tokens, {
      batches,
      batchSize: this.options.batchSize,
      blockSize: this.options.blockSize,
      seed,
      mask,
      compile: this.options.compile,
    });
  }

  /**
   * The model's compiled evaluation step (ids, labels → loss under noGrad), which `evaluate` and
   * `evaluateLM` run; its `stats` and `memoryPlan()` describe the evaluation's capture.
   */
  get evalStep(): CompiledFunction<[Tensor, Tensor], Tensor> {
    return evalStepOf(this.model);
  }

  /** The current learning rate (of the first group). */
  get lr(): number {
    return this.optimizer.getLr()[0];
  }

  /** Everything needed to resume: step, sampler state, optimizer state, losses. */
  state(): TrainerState {
    return {
      step: this.step,
      sampler: this.sampler.getState(),
      dropout: this.dropout.getState(),
      optimizer: this.optimizer.stateDict(),
      losses: [...this.losses],
    };
  }

  /** Restores a `state()` into this trainer (built with the same options and parameters). */
  loadState(s: TrainerState): void {
    this.optimizer.loadStateDict(s.optimizer);
    this.scheduler.loadStateDict({ lastEpoch: s.step });
    this.sampler.setState(s.sampler);
    if (s.dropout) this.dropout.setState(s.dropout);
    this.step = s.step;
    this.losses.splice(0, this.losses.length, ...s.losses);
  }
}

/** Options of `evaluateLM`. */
export interface EvaluateOptions {
  /** Random batches averaged. */
  batches: number;
  /** Windows per batch. */
  batchSize: number;
  /** Tokens per window. */
  blockSize: number;
  /** Seed of the window positions (default 1234: the same windows on every call). */
  seed?: number;
  /** Only tokens whose mask is set are predicted (see `randomWindows`). */
  mask?: ArrayLike<number>;
  /**
   * Run the evaluation step compiled (`lr.compile`, default true): the model's no-grad forward
   * and loss are traced once per batch shape and replayed, as the training step is. The losses
   * are the same as eager ones (bit for bit on the CPU).
   */
  compile?: boolean;
}

/** The compiled evaluation step of each model (created on its first evaluation). */
const evalSteps = new WeakMap<CausalLM, CompiledFunction<[Tensor, Tensor], Tensor>>();

function evalStepOf(model: CausalLM): CompiledFunction<[Tensor, Tensor], Tensor> {
  let step = evalSteps.get(model);
  if (!step) {
    step = compile((ids: Tensor, labels: Tensor) => noGrad(() => model.forward(ids, { labels }).loss!));
    evalSteps.set(model, step);
  }
  return step;
}

/**
 * Mean causal-LM loss of a model over random windows of a token stream (no gradients). It waits
 * for any training step or evaluation already running on the model (see `LMTrainer.trainStep`).
 *
 * @example
 * const valLoss = await evaluateLM(model, valTokens, { batches: 4, batchSize: 8, blockSize: 128, seed: 7 });
 */
export async function evaluateLM(
  model: CausalLM,
  tokens: ArrayLike<number>,
  options: EvaluateOptions,
): Promise<number> {
  return exclusive(model, () => evaluateUnshared(model, tokens, options));
}

async function evaluateUnshared(
  model: CausalLM,
  tokens: ArrayLike<number>,
  options: EvaluateOptions,
): Promise<number> {
  checkTokens('evaluate', tokens, model.config.vocab_size);
  const gen = new Generator(options.seed ?? 1234);
  const wasTraining = model.training;
  model.eval();
  const device = model.device;
  const step = evalStepOf(model);
  step.setEnabled(options.compile ?? true);
  let total = 0;
  try {
    for (let i = 0; i < options.batches; i++) {
      const b = randomWindows(tokens, options.batchSize, options.blockSize, gen, options.mask);
      const loss = tidy(() => {
        const ids = fromTypedArray(b.ids, [b.batch, b.block], { dtype: 'int32', device });
        const labels = fromTypedArray(b.labels, [b.batch, b.block], { dtype: 'int32', device });
        return step(ids, labels);
      });
      total += (await loss.item()) as number;
      loss.dispose();
    }
  } finally {
    model.train(wasTraining);
  }
  return total / options.batches;
}
